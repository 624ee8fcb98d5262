package export_test

import (
	"context"
	"strings"
	"testing"

	"entgo.io/ent/dialect"

	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/testenv"
)

// failWatermarkUpdates makes the database refuse every update that moves
// a schedule's watermark until the returned function is called.
func failWatermarkUpdates(t *testing.T, d *db.DB) (heal func()) {
	t.Helper()
	ctx := context.Background()
	create := []string{`CREATE TRIGGER fail_watermark BEFORE UPDATE OF watermark ON schedules
WHEN NEW.watermark <> OLD.watermark BEGIN SELECT RAISE(ABORT, 'injected: database gone'); END`}
	drop := `DROP TRIGGER fail_watermark`
	if d.Dialect == dialect.Postgres {
		create = []string{`CREATE FUNCTION fail_watermark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'injected: database gone'; END $$`,
			`CREATE TRIGGER fail_watermark BEFORE UPDATE OF watermark ON schedules FOR EACH ROW
WHEN (NEW.watermark IS DISTINCT FROM OLD.watermark) EXECUTE FUNCTION fail_watermark()`}
		drop = `DROP TRIGGER fail_watermark ON schedules`
	}
	for _, q := range create {
		_, err := d.SQL.ExecContext(ctx, q)
		testenv.Must(t, err)
	}
	return func() {
		_, err := d.SQL.ExecContext(ctx, drop)
		testenv.Must(t, err)
	}
}

// TestOutcomeCommitsWithWatermark: a run is recorded SUCCEEDED only after
// its schedule's watermark moved. When the schedule cannot be updated, the
// run is not recorded SUCCEEDED either (it stays RUNNING for orphan recovery,
// which retries it: identical bytes, nothing written, watermark moved) —
// never a SUCCEEDED period whose rows the next period exports again.
func TestOutcomeCommitsWithWatermark(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		e := newImmEnv(t, d, schedule.ModeINCREMENTAL)
		// A fault of the database itself (a trigger refusing the
		// watermark's update), not of ent's hooks: the outcome is written
		// past them (db.Runs).
		healed := failWatermarkUpdates(t, d)
		before := e.watermark()
		r := e.exec(e.first)
		if r.State == exportrun.StateSUCCEEDED || r.FinishTime != nil {
			t.Fatalf("run recorded %s although its watermark could not move", r.State)
		}
		if w := e.watermark(); w != before {
			t.Fatalf("watermark %d, want %d", w, before)
		}
		sc, err := d.Client.Schedule.Get(e.ctx, e.sc.ID)
		testenv.Must(t, err)
		if sc.LastRunID == r.ID {
			t.Fatalf("schedule's last run moved to %s without its outcome", r.ID)
		}

		healed()
		again := e.requeue(r)
		if again.State != exportrun.StateSUCCEEDED || !strings.Contains(again.Note, "nothing was written") {
			t.Fatalf("retry: %s note %q", again.State, again.Note)
		}
		if w := e.watermark(); w != again.ToSeq || w == before {
			t.Fatalf("watermark %d after the retry, want %d", w, again.ToSeq)
		}
		sc, err = d.Client.Schedule.Get(e.ctx, e.sc.ID)
		testenv.Must(t, err)
		if sc.LastRunID != again.ID || sc.LastSuccessTime == nil || !sc.LastSuccessTime.Equal(*again.FinishTime) {
			t.Fatalf("schedule's last run %s at %v, want %s at its finish time %v", sc.LastRunID, sc.LastSuccessTime, again.ID, again.FinishTime)
		}
	})
}

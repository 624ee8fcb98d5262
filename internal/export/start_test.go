package export_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"entgo.io/ent/dialect"

	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/export"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestStartBySchedule: Start takes a schedule id; it returns the new run
// and its QUEUED report (watchers see it first, once), and the run loads
// the schedule itself and delivers.
func TestStartBySchedule(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		ctx, _, queued, dir := queuedRun(t, d, schedule.StateACTIVE, "", exportrun.TriggerSEND_NOW)
		prev, err := d.Client.ExportRun.Get(ctx, queued)
		if err != nil {
			t.Fatal(err)
		}
		r := localRunner(t, d, dir)
		defer r.Close(ctx)
		run, first, err := r.Start(ctx, prev.ScheduleID, exportrun.TriggerSEND_NOW.String(), prev.RequestedBy)
		if err != nil {
			t.Fatal(err)
		}
		if run.ScheduleID != prev.ScheduleID || run.Trigger != exportrun.TriggerSEND_NOW || run.RequestedBy != prev.RequestedBy {
			t.Fatalf("run %+v", run)
		}
		if first.RunID != run.ID || first.Phase != export.PhaseQueued {
			t.Fatalf("first report %+v, want QUEUED of %s", first, run.ID)
		}
		ch := r.Watch(ctx, run)
		var last export.Progress
		queuedReports := 0
		timeout := time.After(time.Minute)
		for done := false; !done; {
			select {
			case p, ok := <-ch:
				if !ok {
					done = true
					break
				}
				last = p
				if p.Phase == export.PhaseQueued {
					queuedReports++
				}
			case <-timeout:
				t.Fatal("no terminal report within a minute")
			}
		}
		if last.Phase != export.PhaseSucceeded || queuedReports > 1 {
			t.Fatalf("last report %+v (error %+v), %d QUEUED reports", last, last.Error, queuedReports)
		}
		if files, _ := filepath.Glob(filepath.Join(dir, run.ID+".csv")); len(files) != 1 {
			t.Fatalf("no file %s.csv in %s", run.ID, dir)
		}
	})
}

// TestStartFreesTheSlotOfARunNotCreated: with one Send now slot per
// process (and the organization's limit on, so PostgreSQL takes its
// transaction path), a Send now whose run row cannot be inserted (a
// trigger refuses it) gives its slot back: the next one starts.
func TestStartFreesTheSlotOfARunNotCreated(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		ctx, _, queued, dir := queuedRun(t, d, schedule.StateACTIVE, "", exportrun.TriggerSEND_NOW)
		prev, err := d.Client.ExportRun.Get(ctx, queued)
		testenv.Must(t, err)
		testenv.Must(t, d.Client.ExportRun.UpdateOneID(queued).SetState(exportrun.StateSUCCEEDED).Exec(ctx))
		refuse, allow := []string{"CREATE TRIGGER refuse_runs BEFORE INSERT ON export_runs BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"},
			"DROP TRIGGER refuse_runs"
		if d.Dialect == dialect.Postgres {
			refuse = []string{"CREATE FUNCTION refuse_runs() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'refused by the test'; END$$",
				"CREATE TRIGGER refuse_runs BEFORE INSERT ON export_runs FOR EACH ROW EXECUTE FUNCTION refuse_runs()"}
			allow = "DROP TRIGGER refuse_runs ON export_runs"
		}
		for _, stmt := range refuse {
			_, err := d.SQL.ExecContext(ctx, stmt)
			testenv.Must(t, err)
		}
		r := localRunnerWith(t, d, dir, nil, export.Config{MaxManualRuns: 1, MaxManualRunsPerOrg: 4})
		defer r.Close(ctx)
		for range 3 {
			_, _, err := r.Start(ctx, prev.ScheduleID, exportrun.TriggerSEND_NOW.String(), prev.RequestedBy)
			if err == nil || !strings.Contains(err.Error(), "refused by the test") {
				t.Fatalf("Send now whose run is refused: %v, want the insert's error", err)
			}
		}
		_, err = d.SQL.ExecContext(ctx, allow)
		testenv.Must(t, err)
		run, _, err := r.Start(ctx, prev.ScheduleID, exportrun.TriggerSEND_NOW.String(), prev.RequestedBy)
		if err != nil {
			t.Fatalf("Send now after refused ones: %v", err)
		}
		for p := range r.Watch(ctx, run) {
			if export.Terminal(p.Phase) && p.Phase != export.PhaseSucceeded {
				t.Fatalf("run ended %s", p.Phase)
			}
		}
	})
}

package export_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/hook"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestOutcomeCommitsWithWatermark: a run is recorded SUCCEEDED only after
// its schedule's watermark moved. When the schedule cannot be updated, the
// run is not recorded SUCCEEDED either (it stays RUNNING for orphan recovery,
// which retries it: identical bytes, nothing written, watermark moved) —
// never a SUCCEEDED period whose rows the next period exports again.
func TestOutcomeCommitsWithWatermark(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		e := newImmEnv(t, d, schedule.ModeINCREMENTAL)
		var fail atomic.Bool
		fail.Store(true)
		d.Client.Schedule.Use(func(next ent.Mutator) ent.Mutator {
			return hook.ScheduleFunc(func(ctx context.Context, m *ent.ScheduleMutation) (ent.Value, error) {
				if _, ok := m.Watermark(); ok && fail.Load() {
					return nil, errors.New("injected: database gone")
				}
				return next.Mutate(ctx, m)
			})
		})
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

		fail.Store(false)
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

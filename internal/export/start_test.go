package export_test

import (
	"path/filepath"
	"testing"
	"time"

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

package export_test

import (
	"path/filepath"
	"testing"

	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/export"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestPanicEndsRunFailed: a panic on the run's own goroutine (before the
// upload) and on the goroutine reading the audit log each end the run
// FAILED with code INTERNAL — the process keeps going, no run is left
// RUNNING, nothing is written — and the schedule's next run succeeds.
func TestPanicEndsRunFailed(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		for _, tc := range []struct {
			name string
			hook func() func()
		}{
			{"run goroutine", func() func() { return export.SetBeforeUpload(func(string) { panic("encoder bug") }) }},
			{"reading goroutine", func() func() { return export.SetBeforeStream(func() { panic("reader bug") }) }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := newImmEnv(t, d, schedule.ModeSNAPSHOT)
				undo := tc.hook()
				r := e.run(exportrun.TriggerSEND_NOW)
				undo()
				wantState(t, r, exportrun.StateFAILED, "INTERNAL")
				if r.FinishTime == nil {
					t.Error("the failed run has no finish time")
				}
				if files, _ := filepath.Glob(filepath.Join(e.dir, "*")); len(files) != 0 {
					t.Errorf("a panicked run left files: %v", files)
				}
				wantState(t, e.run(exportrun.TriggerSEND_NOW), exportrun.StateSUCCEEDED, "")
			})
		}
	})
}

package export_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/export"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestRemoteWatchersShareOnePoll, on SQLite and PostgreSQL: 25 watchers of
// a run executed by another replica all see its progress and its terminal
// state, while the runner reads it once per tick for all of them (not once
// per watcher); a watcher that leaves stops nobody else.
func TestRemoteWatchersShareOnePoll(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		ctx, _, runID, dir := queuedRun(t, d, schedule.StateACTIVE, "", exportrun.TriggerSEND_NOW)
		testenv.Must(t, d.Client.ExportRun.UpdateOneID(runID).SetState(exportrun.StateRUNNING).SetRunner("another-replica").
			SetPhase(export.PhaseQuerying).Exec(ctx))
		r := localRunner(t, d, dir)
		defer r.Close(context.Background())

		row, err := d.Client.ExportRun.Get(ctx, runID)
		testenv.Must(t, err)
		const watchers = 25
		start := time.Now()
		var wg sync.WaitGroup
		seen := make([][]export.Progress, watchers)
		early, leave := context.WithCancel(ctx)
		for i := 0; i < watchers; i++ {
			wctx := ctx
			if i == 0 {
				wctx = early
			}
			ch := r.Watch(wctx, row)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for p := range ch {
					seen[i] = append(seen[i], p)
				}
			}()
		}
		time.Sleep(600 * time.Millisecond)
		leave() // one watcher goes away; the others keep following
		testenv.Must(t, d.Client.ExportRun.UpdateOneID(runID).SetPhase(export.PhaseUploading).SetRows(500).Exec(ctx))
		time.Sleep(600 * time.Millisecond)
		testenv.Must(t, d.Client.ExportRun.UpdateOneID(runID).SetState(exportrun.StateSUCCEEDED).SetRows(1000).Exec(ctx))
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("watchers did not end after the run finished")
		}
		elapsed := time.Since(start)
		for i := 1; i < watchers; i++ {
			s := seen[i]
			if len(s) == 0 || s[len(s)-1].Phase != "SUCCEEDED" || s[len(s)-1].Rows != 1000 {
				t.Fatalf("watcher %d saw %v, want it to end with SUCCEEDED and 1000 rows", i, s)
			}
			uploading := false
			for _, p := range s {
				uploading = uploading || (p.Phase == export.PhaseUploading && p.Rows == 500)
			}
			if !uploading {
				t.Errorf("watcher %d never saw the UPLOADING progress: %v", i, s)
			}
		}
		// 250 ms ticks: about elapsed/250ms queries for all 25 watchers.
		if polls, ticks := r.RemotePolls(), int64(elapsed/(250*time.Millisecond))+2; polls > ticks || polls == 0 {
			t.Errorf("%d queries in %s for %d watchers; want at most %d (one a tick)", polls, elapsed.Round(time.Millisecond), watchers, ticks)
		}
	})
}

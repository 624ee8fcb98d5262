package scheduler

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/internal/tenant"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestReleaseClaimed: runs this process claimed but could not start go back
// to the queue at once (runner and heartbeat cleared); a run another
// process claimed, or one already running, is left alone.
func TestReleaseClaimed(t *testing.T) {
	d := testenv.PostgresDB(t)
	ctx := tenant.System(context.Background())
	ds := NewDispatcher(d, nil, slog.New(slog.DiscardHandler), DispatcherConfig{RunnerID: "me"}, time.Now)
	now := time.Now()
	mk := func(runner string, state exportrun.State) string {
		r, err := d.Client.ExportRun.Create().SetOrgID("org_x").SetScheduleID("sch_x").SetTrigger(exportrun.TriggerSCHEDULED).
			SetRunner(runner).SetHeartbeatTime(now).SetState(state).Save(ctx)
		testenv.Must(t, err)
		return r.ID
	}
	mine, theirs, running := mk("me", exportrun.StateQUEUED), mk("other", exportrun.StateQUEUED), mk("me", exportrun.StateRUNNING)
	ds.release(ctx, []string{mine, theirs, running})
	for id, want := range map[string]string{mine: "", theirs: "other", running: "me"} {
		r, err := d.Client.ExportRun.Get(ctx, id)
		testenv.Must(t, err)
		if r.Runner != want || (want == "") != (r.HeartbeatTime == nil) {
			t.Fatalf("run %s: runner %q heartbeat %v, want runner %q", id, r.Runner, r.HeartbeatTime, want)
		}
	}
}

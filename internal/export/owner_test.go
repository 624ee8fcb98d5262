package export_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/ent/user"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/ownership"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestRunChecksOwnerAuthorization: a run acts with its schedule owner's
// authority as it is when the run starts. A run of an owner who lost the
// Audit Logs grant, was deactivated or was demoted to VIEWER after the run
// was queued ends FAILED (OWNER_NOT_AUTHORIZED) without writing anything,
// Send now and scheduled alike, and the schedule is paused with
// OWNER_NOT_AUTHORIZED; a granted CREATOR's run (the control) delivers.
func TestRunChecksOwnerAuthorization(t *testing.T) {
	grant := func(ctx context.Context, c *ent.Client, u *ent.User) error {
		return c.ConnectionGrant.Create().SetUserID(u.ID).SetConnectionID(auditlog.ConnectionID).Exec(ctx)
	}
	creator := func(ctx context.Context, c *ent.Client, u *ent.User) error {
		return c.User.UpdateOne(u).SetAccountType(user.AccountTypeCREATOR).Exec(ctx)
	}
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		for _, tc := range []struct {
			name  string
			owner []func(ctx context.Context, c *ent.Client, u *ent.User) error
			ok    bool
		}{
			{"granted creator", []func(context.Context, *ent.Client, *ent.User) error{creator, grant}, true},
			{"creator without grant", []func(context.Context, *ent.Client, *ent.User) error{creator}, false},
			{"deactivated", []func(context.Context, *ent.Client, *ent.User) error{grant, func(ctx context.Context, c *ent.Client, u *ent.User) error {
				return c.User.UpdateOne(u).SetActive(false).Exec(ctx)
			}}, false},
			{"viewer", []func(context.Context, *ent.Client, *ent.User) error{grant, func(ctx context.Context, c *ent.Client, u *ent.User) error {
				return c.User.UpdateOne(u).SetAccountType(user.AccountTypeVIEWER).Exec(ctx)
			}}, false},
		} {
			for _, trigger := range []exportrun.Trigger{exportrun.TriggerSCHEDULED, exportrun.TriggerSEND_NOW} {
				t.Run(tc.name+"_"+string(trigger), func(t *testing.T) {
					ctx, orgID, runID, dir := queuedRun(t, d, schedule.StateACTIVE, "", trigger)
					run, err := d.Client.ExportRun.Get(ctx, runID)
					if err != nil {
						t.Fatal(err)
					}
					u, err := d.Client.User.Get(ctx, run.RequestedBy)
					if err != nil {
						t.Fatal(err)
					}
					for _, change := range tc.owner {
						if err := change(ctx, d.Client, u); err != nil {
							t.Fatal(err)
						}
					}
					executeRun(t, d, ctx, orgID, runID, dir)

					if run, err = d.Client.ExportRun.Get(ctx, runID); err != nil {
						t.Fatal(err)
					}
					sc, err := d.Client.Schedule.Get(ctx, run.ScheduleID)
					if err != nil {
						t.Fatal(err)
					}
					files, _ := filepath.Glob(filepath.Join(dir, "*.csv"))
					if tc.ok {
						if run.State != exportrun.StateSUCCEEDED || len(files) != 1 || sc.State != schedule.StateACTIVE {
							t.Fatalf("control run %s (%s), files %v, schedule %s: want SUCCEEDED, one file, ACTIVE", run.State, run.ErrorCode, files, sc.State)
						}
						return
					}
					if run.State != exportrun.StateFAILED || run.ErrorCode != ownership.Code {
						t.Errorf("run = %s (%s: %s), want FAILED (%s)", run.State, run.ErrorCode, run.ErrorMessage, ownership.Code)
					}
					if len(files) != 0 {
						t.Errorf("files written: %v", files)
					}
					if sc.State != schedule.StatePAUSED || sc.PauseReason == nil || *sc.PauseReason != schedule.PauseReasonOWNER_NOT_AUTHORIZED || sc.NextRunTime != nil {
						t.Errorf("schedule %s (%v, next %v), want PAUSED (OWNER_NOT_AUTHORIZED) without a next run", sc.State, sc.PauseReason, sc.NextRunTime)
					}
				})
			}
		}
	})
}

package schedules_test

import (
	"errors"
	"testing"
	"time"

	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/schedules"
	"github.com/auditexport/auditexport/internal/testenv"
)

func reason(err error) string {
	var pe *schedules.PreconditionError
	if errors.As(err, &pe) {
		return pe.Reason()
	}
	return ""
}

// TestRules: pause, resume and the Send now preconditions, in-process on
// SQLite and PostgreSQL.
func TestRules(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		o := testenv.NewOrg(t, d, "a@example.com")
		ctx, org, u, c := o.Ctx, o, o.Admin, d.Client
		in, err := c.StorageIntegration.Create().SetName("loc").SetProvider("LOCAL").SetDestination("file:///exports/" + org.ID + "/a/").
			SetExternalID("x").SetCreatorID(u.ID).Save(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wb, err := c.Workbook.Create().SetOwnerID(u.ID).SetSaved(true).SetName("wb").Save(ctx)
		if err != nil {
			t.Fatal(err)
		}
		el, err := c.Element.Create().SetWorkbookID(wb.ID).SetName("e").SetConnectionID(auditlog.ConnectionID).
			SetTableName(auditlog.TableName).SetSpec(auditlog.Spec{}).Save(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := c.Schedule.Create().SetWorkbookID(wb.ID).SetElementID(el.ID).SetName("s").SetOwnerID(u.ID).
			SetIntegrationID(in.ID).SetIntegrationName(in.Name).SetURI(in.Destination + "{run_id}.csv").
			SetFormat(schedule.FormatCSV).SetCompression(schedule.CompressionNONE).SetCron("0 6 * * *").SetTimeZone("Europe/Berlin").
			SetMode(schedule.ModeINCREMENTAL).SetConsecutiveFailures(3).Save(ctx)
		if err != nil {
			t.Fatal(err)
		}

		p, err := schedules.Pause(ctx, c, sc.ID)
		if err != nil || p.State != schedule.StatePAUSED || *p.PauseReason != schedule.PauseReasonUSER || p.NextRunTime != nil {
			t.Fatalf("pause: %+v %v", p, err)
		}
		now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
		r, err := schedules.Resume(ctx, c, p, now)
		if err != nil || r.State != schedule.StateACTIVE || r.PauseReason != nil || r.ConsecutiveFailures != 0 ||
			r.NextRunTime == nil || !r.NextRunTime.Equal(time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)) {
			t.Fatalf("resume: %+v %v", r, err)
		}

		// The destination moved while it was paused.
		if err := c.StorageIntegration.UpdateOneID(in.ID).SetDestination("file:///exports/" + org.ID + "/b/").Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := schedules.Resume(ctx, c, r, now); reason(err) != schedules.ReasonURIOutsideDestination {
			t.Errorf("resume outside the destination: %v", err)
		}
		detached, err := c.Schedule.UpdateOneID(sc.ID).SetIntegrationID("").Save(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := schedules.Resume(ctx, c, detached, now); reason(err) != schedules.ReasonIntegrationDeleted {
			t.Errorf("resume without integration: %v", err)
		}
		if err := schedules.CheckSendNow(ctx, c, detached); reason(err) != schedules.ReasonIntegrationDeleted {
			t.Errorf("send now without integration: %v", err)
		}

		// Incremental: one run at a time.
		if err := schedules.CheckSendNow(ctx, c, r); err != nil {
			t.Errorf("send now, nothing running: %v", err)
		}
		run, err := c.ExportRun.Create().SetScheduleID(sc.ID).SetTrigger(exportrun.TriggerSCHEDULED).SetState(exportrun.StateRUNNING).Save(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := schedules.CheckSendNow(ctx, c, r); reason(err) != schedules.ReasonRunInProgress {
			t.Errorf("send now while a run is running: %v", err)
		}
		snapshot, err := c.Schedule.UpdateOneID(sc.ID).SetMode(schedule.ModeSNAPSHOT).Save(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := schedules.CheckSendNow(ctx, c, snapshot.Update().SetIntegrationID(in.ID).SaveX(ctx)); err != nil {
			t.Errorf("send now of a snapshot schedule while %s runs: %v", run.ID, err)
		}
	})
}

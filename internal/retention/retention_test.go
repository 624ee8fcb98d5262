package retention_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/auditevent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/retention"
	"github.com/auditexport/auditexport/internal/tenant"
	"github.com/auditexport/auditexport/internal/testenv"
)

var now = time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	t   *testing.T
	d   *db.DB
	ctx context.Context
}

func (f fixture) org(name string) string {
	o, err := f.d.Client.Organization.Create().SetName(name).Save(tenant.System(f.ctx))
	if err != nil {
		f.t.Fatal(err)
	}
	return o.ID
}

// events adds one event per age to org and returns their ids.
func (f fixture) events(org string, ages ...time.Duration) []int64 {
	var ids []int64
	for i, age := range ages {
		e, err := f.d.Client.AuditEvent.Create().SetEventID(fmt.Sprintf("evt_%s_%d", org, i)).SetRequestTime(now.Add(-age)).
			SetEventCategory("C").SetEventType("T").SetEventStatus("SUCCESS").Save(tenant.WithOrg(f.ctx, org))
		if err != nil {
			f.t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	return ids
}

func (f fixture) schedule(org string, mode schedule.Mode, state schedule.State, watermark int64) *ent.Schedule {
	sc, err := f.d.Client.Schedule.Create().SetWorkbookID("wb").SetElementID("el").SetName(fmt.Sprintf("s%d", watermark)).
		SetOwnerID("usr").SetIntegrationID("int").SetIntegrationName("i").SetURI("s3://b/x.csv").
		SetFormat(schedule.FormatCSV).SetCompression(schedule.CompressionNONE).SetCron("0 0 * * *").SetTimeZone("UTC").
		SetMode(mode).SetState(state).SetWatermark(watermark).Save(tenant.WithOrg(f.ctx, org))
	if err != nil {
		f.t.Fatal(err)
	}
	return sc
}

func (f fixture) run(org, scheduleID string, state exportrun.State, created time.Time, finished *time.Time) string {
	c := f.d.Client.ExportRun.Create().SetScheduleID(scheduleID).SetTrigger(exportrun.TriggerSEND_NOW).SetState(state).
		SetCreateTime(created)
	if finished != nil {
		c.SetFinishTime(*finished)
	}
	r, err := c.Save(tenant.WithOrg(f.ctx, org))
	if err != nil {
		f.t.Fatal(err)
	}
	return r.ID
}

func (f fixture) remaining(org string) map[int64]bool {
	ids, err := f.d.Client.AuditEvent.Query().Where(auditevent.EventCategory("C")).IDs(tenant.WithOrg(f.ctx, org))
	if err != nil {
		f.t.Fatal(err)
	}
	m := map[int64]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// TestEnforce: with a 30-day run history and a 90-day audit log, one pass
// at a fixed clock deletes old ended runs but never a schedule's latest run
// nor a QUEUED/RUNNING one, and deletes old audit events except those an
// ACTIVE or PAUSED incremental schedule of the same organisation has not
// exported; organisations are independent, and each purge is itself audited.
// A second pass deletes nothing more.
func TestEnforce(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		f := fixture{t: t, d: d, ctx: context.Background()}
		day := 24 * time.Hour
		plain, incr, paused := f.org("plain"), f.org("incremental"), f.org("paused")

		plainEv := f.events(plain, 200*day, 100*day, 10*day)
		incrEv := f.events(incr, 200*day, 150*day, 120*day, 5*day)
		pausedEv := f.events(paused, 200*day, 150*day)
		f.schedule(incr, schedule.ModeINCREMENTAL, schedule.StateACTIVE, incrEv[2])
		f.schedule(incr, schedule.ModeINCREMENTAL, schedule.StateACTIVE, incrEv[0]) // the lowest watermark bounds
		f.schedule(incr, schedule.ModeSNAPSHOT, schedule.StateACTIVE, 0)            // snapshots do not hold rows back
		f.schedule(paused, schedule.ModeINCREMENTAL, schedule.StatePAUSED, 0)

		sc := f.schedule(plain, schedule.ModeSNAPSHOT, schedule.StateACTIVE, 0)
		at := func(age time.Duration) *time.Time { x := now.Add(-age); return &x }
		oldOK := f.run(plain, sc.ID, exportrun.StateSUCCEEDED, *at(60 * day), at(60*day))
		oldFailed := f.run(plain, sc.ID, exportrun.StateFAILED, *at(59 * day), at(59*day))
		oldRunning := f.run(plain, sc.ID, exportrun.StateRUNNING, *at(58 * day), nil)
		oldQueued := f.run(plain, sc.ID, exportrun.StateQUEUED, *at(57 * day), nil)
		recent := f.run(plain, sc.ID, exportrun.StateSUCCEEDED, *at(2 * day), at(2*day))
		lone := f.schedule(plain, schedule.ModeSNAPSHOT, schedule.StateACTIVE, 1)
		latestOld := f.run(plain, lone.ID, exportrun.StateSUCCEEDED, *at(100 * day), at(100*day))

		rec := auditlog.NewRecorder(d.Client, nil).WithDialect(d.Dialect)
		cfg := retention.Config{RunHistory: 30 * day, AuditLog: 90 * day, Batch: 2}
		res, err := retention.Enforce(f.ctx, d, rec, cfg, now)
		if err != nil {
			t.Fatal(err)
		}
		if res.Runs != 2 || res.Events != 3 {
			t.Errorf("deleted %d runs and %d events, want 2 and 3", res.Runs, res.Events)
		}
		sctx := tenant.System(f.ctx)
		for id, keep := range map[string]bool{oldOK: false, oldFailed: false, oldRunning: true, oldQueued: true, recent: true, latestOld: true} {
			_, err := d.Client.ExportRun.Get(sctx, id)
			if keep != (err == nil) {
				t.Errorf("run %s: kept %v, want %v (err %v)", id, err == nil, keep, err)
			}
		}
		for _, tc := range []struct {
			org  string
			ids  []int64
			keep []bool
		}{
			{plain, plainEv, []bool{false, false, true}},
			// Watermarks incrEv[2] and incrEv[0]: only incrEv[0] was exported by both.
			{incr, incrEv, []bool{false, true, true, true}},
			{paused, pausedEv, []bool{true, true}},
		} {
			left := f.remaining(tc.org)
			for i, id := range tc.ids {
				if left[id] != tc.keep[i] {
					t.Errorf("org %s event %d (#%d): kept %v, want %v", tc.org, id, i, left[id], tc.keep[i])
				}
			}
		}
		purges, err := d.Client.AuditEvent.Query().Where(auditevent.EventType("RETENTION_PURGE")).All(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(purges) != 2 {
			t.Fatalf("%d RETENTION_PURGE events, want 2 (plain, incremental)", len(purges))
		}
		again, err := retention.Enforce(f.ctx, d, rec, cfg, now)
		if err != nil || again.Runs != 0 || again.Events != 0 {
			t.Errorf("second pass deleted %+v (%v), want nothing", again, err)
		}
	})
}

package integrations_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/integrations"
	"github.com/auditexport/auditexport/internal/notify"
	"github.com/auditexport/auditexport/internal/secrets"
	"github.com/auditexport/auditexport/internal/tenant"
	"github.com/auditexport/auditexport/internal/testenv"
)

type fixture struct {
	t     *testing.T
	d     *db.DB
	ctx   context.Context
	cmd   *integrations.Commands
	owner *ent.User
	el    *ent.Element
	wb    *ent.Workbook
	root  string // the organization's LOCAL directory
}

func newFixture(t *testing.T, d *db.DB) *fixture {
	t.Helper()
	org, err := d.Client.Organization.Create().SetName("o").Save(tenant.System(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := tenant.WithOrg(context.Background(), org.ID)
	keys, err := secrets.LoadOrCreate(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	mail, err := notify.New("", "auditexport@localhost", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, d: d, ctx: ctx, cmd: integrations.New(d.Client, keys, mail, slog.New(slog.DiscardHandler), nil),
		root: filepath.Join(t.TempDir(), org.ID)}
	if f.owner, err = d.Client.User.Create().SetEmail("owner@example.com").SetAccountType("ADMIN").Save(ctx); err != nil {
		t.Fatal(err)
	}
	if f.wb, err = d.Client.Workbook.Create().SetOwnerID(f.owner.ID).SetSaved(true).SetName("wb").Save(ctx); err != nil {
		t.Fatal(err)
	}
	if f.el, err = d.Client.Element.Create().SetWorkbookID(f.wb.ID).SetName(auditlog.TableName).
		SetConnectionID(auditlog.ConnectionID).SetTableName(auditlog.TableName).SetSpec(auditlog.Spec{}).Save(ctx); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) loc(sub string) destination.Location {
	f.t.Helper()
	l, err := destination.ParseDestination(destination.Local, "file://"+filepath.Join(f.root, sub)+"/")
	if err != nil {
		f.t.Fatal(err)
	}
	return l
}

func (f *fixture) create(name, sub string) *ent.StorageIntegration {
	f.t.Helper()
	in, err := f.cmd.Create(f.ctx, integrations.CreateInput{Name: name, Provider: destination.Local, Destination: f.loc(sub), CreatorID: f.owner.ID})
	if err != nil {
		f.t.Fatal(err)
	}
	return in
}

func (f *fixture) schedule(in *ent.StorageIntegration, name string) *ent.Schedule {
	f.t.Helper()
	next := time.Now().Add(time.Hour)
	sc, err := f.d.Client.Schedule.Create().SetWorkbookID(f.wb.ID).SetElementID(f.el.ID).SetName(name).SetOwnerID(f.owner.ID).
		SetIntegrationID(in.ID).SetIntegrationName(in.Name).SetURI(in.Destination + name + "/{run_id}.csv").
		SetFormat(schedule.FormatCSV).SetCompression(schedule.CompressionNONE).SetCron("0 * * * *").SetTimeZone("UTC").
		SetNextRunTime(next).Save(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	return sc
}

func (f *fixture) get(id string) *ent.Schedule {
	f.t.Helper()
	sc, err := f.d.Client.Schedule.Get(f.ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	return sc
}

// TestCommands: the integration rules, in-process on SQLite and PostgreSQL.
func TestCommands(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d)
		a := f.create("a", "a")
		b := f.create("b", "b")
		sa1, sa2, sb := f.schedule(a, "s1"), f.schedule(a, "s2"), f.schedule(b, "s3")

		var taken *integrations.NameTakenError
		if _, err := f.cmd.Create(f.ctx, integrations.CreateInput{Name: "a", Provider: destination.Local, Destination: f.loc("x"), CreatorID: f.owner.ID}); !errors.As(err, &taken) || taken.Name != "a" {
			t.Errorf("a second integration named a: %v, want NameTakenError", err)
		}

		counts, err := integrations.LinkedCounts(f.ctx, d.Client, []string{a.ID, b.ID, "int_none"})
		if err != nil || counts[a.ID] != 2 || counts[b.ID] != 1 || counts["int_none"] != 0 {
			t.Errorf("LinkedCounts = %v, %v", counts, err)
		}

		// Following schedules to a destination that no longer covers them
		// is refused as a whole: nothing changes.
		elsewhere := f.loc("elsewhere")
		newName := "a2"
		_, err = f.cmd.Update(f.ctx, a, integrations.UpdateInput{Name: &newName, Destination: &elsewhere, FollowSchedules: true})
		var outside *integrations.ScheduleOutsideDestinationError
		if !errors.As(err, &outside) || outside.Reason() != "SCHEDULE_OUTSIDE_DESTINATION" || (outside.ScheduleID != sa1.ID && outside.ScheduleID != sa2.ID) {
			t.Fatalf("update moving the destination away with update_linked_schedules: %v", err)
		}
		if cur, err := d.Client.StorageIntegration.Get(f.ctx, a.ID); err != nil || cur.Name != "a" || cur.Destination != a.Destination {
			t.Errorf("after the refused update: %+v, %v", cur, err)
		}

		// Following schedules: renamed, nothing paused.
		res, err := f.cmd.Update(f.ctx, a, integrations.UpdateInput{Name: &newName, FollowSchedules: true})
		if err != nil || len(res.Paused) != 0 || res.Integration.Name != "a2" {
			t.Fatalf("rename following schedules: %+v, %v", res, err)
		}
		if sc := f.get(sa1.ID); sc.State != schedule.StateACTIVE || sc.IntegrationName != "a2" {
			t.Errorf("schedule after a followed rename: %s %q", sc.State, sc.IntegrationName)
		}

		// The default: every linked schedule pauses (INTEGRATION_UPDATED),
		// the other integration's do not.
		region := "eu-west-1"
		res, err = f.cmd.Update(f.ctx, res.Integration, integrations.UpdateInput{Region: &region})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := slices.Sorted(slices.Values(res.Paused)), slices.Sorted(slices.Values([]string{sa1.ID, sa2.ID})); !slices.Equal(got, want) {
			t.Errorf("paused %v, want %v", got, want)
		}
		for _, id := range []string{sa1.ID, sa2.ID} {
			if sc := f.get(id); sc.State != schedule.StatePAUSED || sc.PauseReason == nil || *sc.PauseReason != schedule.PauseReasonINTEGRATION_UPDATED {
				t.Errorf("schedule %s after the update: %s %v", id, sc.State, sc.PauseReason)
			}
		}
		if sc := f.get(sb.ID); sc.State != schedule.StateACTIVE {
			t.Errorf("b's schedule: %s", sc.State)
		}
		if _, err := f.cmd.Update(f.ctx, res.Integration, integrations.UpdateInput{Name: proto("b")}); !errors.As(err, &taken) {
			t.Errorf("renaming a to b: %v, want NameTakenError", err)
		}

		// Delete pausing: b's schedule is detached and paused.
		del, err := f.cmd.Delete(f.ctx, b, false)
		if err != nil || !slices.Equal(del.Paused, []string{sb.ID}) || len(del.Deleted) != 0 {
			t.Fatalf("delete b: %+v, %v", del, err)
		}
		if sc := f.get(sb.ID); sc.State != schedule.StatePAUSED || sc.IntegrationID != "" || sc.NextRunTime != nil ||
			*sc.PauseReason != schedule.PauseReasonINTEGRATION_DELETED {
			t.Errorf("b's schedule after the delete: %s %q %v %v", sc.State, sc.IntegrationID, sc.NextRunTime, sc.PauseReason)
		}
		// Delete with the schedules.
		del, err = f.cmd.Delete(f.ctx, res.Integration, true)
		if err != nil || len(del.Deleted) != 2 || len(del.Paused) != 0 {
			t.Fatalf("delete a with its schedules: %+v, %v", del, err)
		}
		if n, err := d.Client.Schedule.Query().Count(f.ctx); err != nil || n != 1 {
			t.Errorf("%d schedules left (%v), want b's paused one", n, err)
		}
	})
}

func proto(s string) *string { return &s }

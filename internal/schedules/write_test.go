package schedules_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/revision"
	"github.com/auditexport/auditexport/internal/schedules"
	"github.com/auditexport/auditexport/internal/testenv"
)

// violations returns field → message of an *InvalidError (nil otherwise).
func violations(err error) map[string]string {
	var inv *schedules.InvalidError
	if !errors.As(err, &inv) {
		return nil
	}
	out := map[string]string{}
	for _, v := range inv.Violations {
		out[v.Field] = v.Msg
	}
	return out
}

// fixture makes an organization with a LOCAL integration "loc" and a saved
// workbook with one AUDIT_LOGS element.
func fixture(t *testing.T, d *db.DB) (testenv.Org, *ent.StorageIntegration, *ent.Workbook, *ent.Element) {
	t.Helper()
	o := testenv.NewOrg(t, d, "admin@example.com")
	ctx, c := o.Ctx, d.Client
	integ, err := c.StorageIntegration.Create().SetName("loc").SetProvider("LOCAL").SetDestination("file:///exports/" + o.ID + "/a/").
		SetExternalID("x").SetCreatorID(o.Admin.ID).Save(ctx)
	testenv.Must(t, err)
	wb, err := c.Workbook.Create().SetOwnerID(o.Admin.ID).SetSaved(true).SetName("wb").Save(ctx)
	testenv.Must(t, err)
	el, err := c.Element.Create().SetWorkbookID(wb.ID).SetName("logins").SetConnectionID(auditlog.ConnectionID).
		SetTableName(auditlog.TableName).SetSpec(auditlog.Spec{}).Save(ctx)
	testenv.Must(t, err)
	return o, integ, wb, el
}

// TestCreateUpdateRules: the schedule writes' rules in-process on SQLite and
// PostgreSQL — what is refused names its field and stores nothing, what is
// accepted is stored with its next run time.
func TestCreateUpdateRules(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		o, integ, wb, el := fixture(t, d)
		ctx, c := o.Ctx, d.Client
		must := func(err error) { t.Helper(); testenv.Must(t, err) }
		unsaved, err := c.Workbook.Create().SetOwnerID(o.Admin.ID).SetName("draft").Save(ctx)
		must(err)

		now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
		cmd := schedules.New(c, []string{"partner.example"}, func() time.Time { return now })
		good := schedules.Fields{
			ElementID: el.ID, IntegrationName: "loc", URI: integ.Destination + "{date}.csv.gz", Format: "CSV", Compression: "GZIP",
			CsvEscapeFormulas: true, Cron: "0 6 * * *", TimeZone: "Europe/Berlin", SendCondition: "ALWAYS", Mode: "SNAPSHOT",
			CatchUp: "ONE", NotifyEmails: []string{"admin@example.com", "ops@partner.example"},
		}

		if _, err := cmd.Create(ctx, unsaved, o.Admin.ID, good); reason(err) != schedules.ReasonWorkbookNotSaved {
			t.Fatalf("unsaved workbook: %v", err)
		}
		for _, tc := range []struct {
			name  string
			edit  func(*schedules.Fields)
			field string
			msg   string
		}{
			{"element of another workbook", func(f *schedules.Fields) { f.ElementID = "el_nope" }, "element_id", "no element"},
			{"unknown integration", func(f *schedules.Fields) { f.IntegrationName = "nope" }, "destination.cloud_storage.storage_integration_name", "no storage integration named"},
			{"uri outside the destination", func(f *schedules.Fields) { f.URI = "file:///exports/" + o.ID + "/b/x.csv.gz" }, "destination.cloud_storage.uri", ""},
			{"extension against format", func(f *schedules.Fields) { f.URI = integ.Destination + "x.json" }, "destination.cloud_storage.uri", ""},
			{"parquet compressed", func(f *schedules.Fields) { f.Format = "PARQUET"; f.URI = integ.Destination + "x.parquet" }, "compression", ""},
			{"cron that never fires", func(f *schedules.Fields) { f.Cron = "0 0 30 2 *" }, "cron", "never fires"},
			{"unknown zone", func(f *schedules.Fields) { f.TimeZone = "Mars/Olympus" }, "time_zone", "unknown time zone"},
			{"outside recipient", func(f *schedules.Fields) { f.NotifyEmails = []string{"admin@example.com", "x@evil.example"} }, "notify_emails[1]", "neither a user"},
		} {
			f := good
			tc.edit(&f)
			_, err := cmd.Create(ctx, wb, o.Admin.ID, f)
			msg, ok := violations(err)[tc.field]
			if !ok || !strings.Contains(msg, tc.msg) {
				t.Errorf("%s: want a violation of %s containing %q, got %v", tc.name, tc.field, tc.msg, err)
			}
		}
		if n := c.Schedule.Query().CountX(ctx); n != 0 {
			t.Fatalf("refused creates stored %d schedules", n)
		}

		sc, err := cmd.Create(ctx, wb, o.Admin.ID, good)
		must(err)
		if sc.Name != "wb / logins" || sc.IntegrationID != integ.ID || sc.State != schedule.StateACTIVE ||
			sc.NextRunTime == nil || !sc.NextRunTime.Equal(time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)) {
			t.Fatalf("created: %+v", sc)
		}

		// An update checks the fields it names against the stored rest.
		_, err = cmd.Update(ctx, sc, schedules.Fields{Format: "JSONL"}, map[string]bool{schedules.FieldFormat: true})
		if _, ok := violations(err)["destination.cloud_storage.uri"]; !ok {
			t.Fatalf("format change against the stored .csv.gz uri: %v", err)
		}
		up, err := cmd.Update(ctx, sc, schedules.Fields{Cron: "30 7 * * *", Name: "ignored"}, map[string]bool{schedules.FieldCron: true})
		must(err)
		if up.Name != sc.Name || up.Cron != "30 7 * * *" || up.URI != sc.URI || up.IntegrationID != integ.ID ||
			!up.NextRunTime.Equal(time.Date(2026, 12, 3, 6, 30, 0, 0, time.UTC)) {
			t.Fatalf("updated: %+v", up)
		}
		// A paused schedule stays without a next run time.
		p, err := schedules.Pause(ctx, c, sc.ID)
		must(err)
		up, err = cmd.Update(ctx, p, schedules.Fields{TimeZone: "UTC"}, map[string]bool{schedules.FieldTimeZone: true})
		must(err)
		if up.State != schedule.StatePAUSED || up.NextRunTime != nil || up.TimeZone != "UTC" {
			t.Fatalf("paused update: %+v", up)
		}
		var stored *ent.Schedule
		if stored, err = c.Schedule.Get(ctx, sc.ID); err != nil || stored.Cron != "30 7 * * *" {
			t.Fatalf("stored: %+v %v", stored, err)
		}
	})
}

// TestUpdateIsConditionalOnTheVersionRead: on SQLite and PostgreSQL, an
// update made from a stale read (another update committed in between) is
// ErrConcurrent and writes nothing; the scheduler's bookkeeping
// (revision.Bookkeeping) does not move update_time, a user-visible change
// does.
func TestUpdateIsConditionalOnTheVersionRead(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		o, integ, wb, el := fixture(t, d)
		ctx, c := o.Ctx, d.Client
		must := func(err error) { t.Helper(); testenv.Must(t, err) }
		cmd := schedules.New(c, nil, func() time.Time { return time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC) })
		created, err := cmd.Create(ctx, wb, o.Admin.ID, schedules.Fields{
			Name: "s", ElementID: el.ID, IntegrationName: "loc", URI: integ.Destination + "{date}.csv", Format: "CSV", Compression: "NONE",
			Cron: "0 6 * * *", TimeZone: "UTC", SendCondition: "ALWAYS", Mode: "SNAPSHOT", CatchUp: "ONE",
		})
		must(err)
		read, err := c.Schedule.Get(ctx, created.ID)
		must(err)

		// Bookkeeping leaves update_time; the read stays current.
		time.Sleep(2 * time.Millisecond)
		must(c.Schedule.UpdateOneID(read.ID).SetNextRunTime(time.Now().Add(time.Hour)).SetConsecutiveFailures(3).Exec(revision.Bookkeeping(ctx)))
		after, err := c.Schedule.Get(ctx, read.ID)
		must(err)
		if !revision.Same(after.UpdateTime, read.UpdateTime) {
			t.Fatalf("bookkeeping moved update_time: %v -> %v", read.UpdateTime, after.UpdateTime)
		}
		// A user edit moves it...
		time.Sleep(2 * time.Millisecond)
		first, err := cmd.Update(ctx, read, schedules.Fields{Cron: "0 7 * * *"}, map[string]bool{schedules.FieldCron: true})
		must(err)
		if !first.UpdateTime.After(read.UpdateTime) {
			t.Fatalf("an edit did not move update_time: %v -> %v", read.UpdateTime, first.UpdateTime)
		}
		// ...so a second edit from the same (now stale) read loses, writing nothing.
		if _, err := cmd.Update(ctx, read, schedules.Fields{Name: "other"}, map[string]bool{schedules.FieldName: true}); !errors.Is(err, revision.ErrConcurrent) {
			t.Fatalf("update from a stale read: %v, want ErrConcurrent", err)
		}
		now, err := c.Schedule.Get(ctx, read.ID)
		must(err)
		if now.Name != "s" || now.Cron != "0 7 * * *" {
			t.Errorf("after the refused update: name %q cron %q, want s / 0 7 * * *", now.Name, now.Cron)
		}
		// From a fresh read it goes through.
		if _, err := cmd.Update(ctx, now, schedules.Fields{Name: "other"}, map[string]bool{schedules.FieldName: true}); err != nil {
			t.Errorf("update from a fresh read: %v", err)
		}
	})
}

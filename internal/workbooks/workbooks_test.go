package workbooks_test

import (
	"context"
	"errors"
	"testing"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/tenant"
	"github.com/auditexport/auditexport/internal/testenv"
	"github.com/auditexport/auditexport/internal/workbooks"
)

// TestRules: the workbook rules, in-process on SQLite and PostgreSQL.
func TestRules(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		org, err := d.Client.Organization.Create().SetName("o").Save(tenant.System(context.Background()))
		if err != nil {
			t.Fatal(err)
		}
		ctx := tenant.WithOrg(context.Background(), org.ID)
		c := d.Client
		user := func(email string) *ent.User {
			u, err := c.User.Create().SetEmail(email).SetAccountType("CREATOR").Save(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return u
		}
		alice, bob := user("alice@example.com"), user("bob@example.com")
		wb, err := c.Workbook.Create().SetOwnerID(alice.ID).SetSaved(true).SetName("wb").Save(ctx)
		if err != nil {
			t.Fatal(err)
		}
		elem := func(name string) *ent.Element {
			e, err := c.Element.Create().SetWorkbookID(wb.ID).SetName(name).SetConnectionID(auditlog.ConnectionID).
				SetTableName(auditlog.TableName).SetSpec(auditlog.Spec{}).Save(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return e
		}
		used, free := elem("used"), elem("free")
		sched := func(owner *ent.User) string {
			sc, err := c.Schedule.Create().SetWorkbookID(wb.ID).SetElementID(used.ID).SetName("s").SetOwnerID(owner.ID).
				SetIntegrationName("x").SetURI("file:///x/{run_id}.csv").SetFormat(schedule.FormatCSV).
				SetCompression(schedule.CompressionNONE).SetCron("0 * * * *").SetTimeZone("UTC").Save(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return sc.ID
		}
		sAlice, sBob := sched(alice), sched(bob)
		load := func() *ent.Workbook {
			w, err := c.Workbook.Query().WithElements().Only(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return w
		}

		// Removing the used element is refused as a whole (the rename too).
		name := "renamed"
		keepFree := []workbooks.Element{{ID: free.ID, Name: "free2"}}
		err = workbooks.Update(ctx, c, load(), workbooks.Change{Name: &name, Elements: &keepFree})
		var inUse *workbooks.ElementInUseError
		if !errors.As(err, &inUse) || inUse.Reason() != "ELEMENT_IN_USE" || inUse.Schedules != 2 {
			t.Fatalf("removing a used element: %v", err)
		}
		if w := load(); w.Name != "wb" || len(w.Edges.Elements) != 2 {
			t.Errorf("after the refused update: %q with %d elements", w.Name, len(w.Edges.Elements))
		}
		// Removing the free one, renaming the used one and adding one.
		keepUsed := []workbooks.Element{{ID: used.ID, Name: "used2"}, {Name: "added"}}
		if err := workbooks.Update(ctx, c, load(), workbooks.Change{Name: &name, Elements: &keepUsed}); err != nil {
			t.Fatal(err)
		}
		w := load()
		names := map[string]bool{}
		for _, e := range w.Edges.Elements {
			names[e.Name] = true
		}
		if w.Name != "renamed" || len(w.Edges.Elements) != 2 || !names["used2"] || !names["added"] {
			t.Errorf("after the update: %q %v", w.Name, names)
		}

		var has *workbooks.HasSchedulesError
		if _, err := workbooks.Delete(ctx, c, wb.ID, false, workbooks.Caller{UserID: alice.ID}); !errors.As(err, &has) || has.Schedules != 2 {
			t.Errorf("delete without force: %v", err)
		}
		var others *workbooks.SchedulesOwnedByOthersError
		if _, err := workbooks.Delete(ctx, c, wb.ID, true, workbooks.Caller{UserID: alice.ID}); !errors.As(err, &others) || others.Schedules != 1 || others.Reason() != "SCHEDULES_OWNED_BY_OTHERS" {
			t.Errorf("forced delete by the owner with bob's schedule: %v", err)
		}
		if n, _ := c.Schedule.Query().Count(ctx); n != 2 {
			t.Errorf("%d schedules after the refused deletes, want 2", n)
		}
		deleted, err := workbooks.Delete(ctx, c, wb.ID, true, workbooks.Caller{UserID: alice.ID, Admin: true})
		if err != nil || len(deleted) != 2 || (deleted[0] != sAlice && deleted[1] != sAlice) || (deleted[0] != sBob && deleted[1] != sBob) {
			t.Fatalf("forced delete by an ADMIN: %v %v", deleted, err)
		}
		if n, _ := c.Element.Query().Count(ctx); n != 0 {
			t.Errorf("%d elements left", n)
		}
	})
}

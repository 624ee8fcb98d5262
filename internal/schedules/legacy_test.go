package schedules_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/auditexport/auditexport/ent/auditevent"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/schedules"
	"github.com/auditexport/auditexport/internal/tenant"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestKeepLegacyCrons: at start-up a stored "*/2 ... sat" cron is
// rewritten to its meaning-keeping spelling and the rewrite is audited in
// the schedule's organisation; other crons are untouched; a second run
// changes nothing.
func TestKeepLegacyCrons(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		o := testenv.NewOrg(t, d, "owner@example.com")
		mk := func(expr string) string {
			sc, err := d.Client.Schedule.Create().SetWorkbookID("wb_x").SetElementID("el_x").SetName(expr).SetOwnerID(o.Admin.ID).
				SetIntegrationName("i").SetURI("file:///x.csv").SetFormat(schedule.FormatCSV).SetCompression(schedule.CompressionNONE).
				SetCron(expr).SetTimeZone("UTC").Save(o.Ctx)
			testenv.Must(t, err)
			return sc.ID
		}
		legacy, plain := mk("0 16 */2 * sat"), mk("0 9 * * 1-5")
		rec := auditlog.NewRecorder(d.Client, nil).WithDialect(d.Dialect)
		log := slog.New(slog.DiscardHandler)
		n, err := schedules.KeepLegacyCrons(context.Background(), d.Client, rec, log)
		if err != nil || n != 1 {
			t.Fatalf("rewrote %d (%v), want 1", n, err)
		}
		for id, want := range map[string]string{legacy: "0 16 1-31/2 * sat", plain: "0 9 * * 1-5"} {
			sc, err := d.Client.Schedule.Get(o.Ctx, id)
			testenv.Must(t, err)
			if sc.Cron != want {
				t.Errorf("cron %q, want %q", sc.Cron, want)
			}
		}
		ev, err := d.Client.AuditEvent.Query().Where(auditevent.EventType("MIGRATE_SCHEDULE_CRON")).Only(tenant.WithOrg(context.Background(), o.ID))
		testenv.Must(t, err)
		if ev.ObjectID != legacy {
			t.Errorf("audit event about %s, want %s", ev.ObjectID, legacy)
		}
		if n, err := schedules.KeepLegacyCrons(context.Background(), d.Client, rec, log); err != nil || n != 0 {
			t.Errorf("second run rewrote %d (%v), want 0", n, err)
		}
	})
}

package schedules

import (
	"context"
	"log/slog"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/cron"
	"github.com/auditexport/auditexport/internal/tenant"
)

// KeepLegacyCrons runs at start-up: a schedule saved before cron day fields
// followed cronie ("*/2" in a day field no longer ORs the two day fields)
// gets its cron rewritten to the spelling that keeps its fire times
// (cron.KeepLegacyMeaning), and the rewrite is recorded in its
// organisation's audit log (SCHEDULES / MIGRATE_SCHEDULE_CRON, with the old
// and new expression) and in the server log. Idempotent: a rewritten cron
// needs no rewrite. It returns how many schedules it rewrote.
func KeepLegacyCrons(ctx context.Context, c *ent.Client, rec *auditlog.Recorder, log *slog.Logger) (int, error) {
	sctx := tenant.System(ctx)
	all, err := c.Schedule.Query().All(sctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sc := range all {
		expr, changed := cron.KeepLegacyMeaning(sc.Cron)
		if !changed {
			continue
		}
		octx := tenant.WithOrg(ctx, sc.OrgID)
		if err := c.Schedule.UpdateOneID(sc.ID).SetCron(expr).Exec(octx); err != nil {
			return n, err
		}
		n++
		log.Warn("schedule cron rewritten to keep its fire times under cronie day-field rules",
			"schedule_id", sc.ID, "old_cron", sc.Cron, "new_cron", expr)
		if _, err := rec.Record(octx, auditlog.Event{OrgID: sc.OrgID, Category: "SCHEDULES", Type: "MIGRATE_SCHEDULE_CRON",
			AccountType: "SYSTEM", ObjectType: "SCHEDULE", ObjectID: sc.ID,
			Metadata: map[string]any{"old_cron": sc.Cron, "new_cron": expr,
				"reason": "a day field starting with * no longer ORs the day fields (cronie); the rewrite keeps the schedule's fire times"}}); err != nil {
			return n, err
		}
	}
	return n, nil
}

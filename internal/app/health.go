package app

import (
	"context"
	"fmt"

	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/metrics"
	"github.com/auditexport/auditexport/internal/tenant"
)

// scheduleHealth reads every schedule's last success for the metrics
// gauge: one scan of the schedules table (not of the run history).
func scheduleHealth(ctx context.Context, d *db.DB) ([]metrics.ScheduleHealth, error) {
	rows, err := d.Client.Schedule.Query().
		Select(schedule.FieldID, schedule.FieldOrgID, schedule.FieldState, schedule.FieldLastSuccessTime, schedule.FieldCreateTime).
		All(tenant.System(ctx))
	if err != nil {
		return nil, err
	}
	out := make([]metrics.ScheduleHealth, 0, len(rows))
	for _, r := range rows {
		h := metrics.ScheduleHealth{OrgID: r.OrgID, ScheduleID: r.ID, State: string(r.State), LastSuccess: r.CreateTime}
		if r.LastSuccessTime != nil {
			h.LastSuccess = *r.LastSuccessTime
		}
		out = append(out, h)
	}
	return out, nil
}

// backfillLastSuccess fills schedules.last_success_time (added later) from
// the run history, so the gauge does not report schedules that succeeded
// before an upgrade as silent since their creation.
func backfillLastSuccess(ctx context.Context, d *db.DB) error {
	_, err := d.SQL.ExecContext(ctx, `UPDATE schedules SET last_success_time = (
		SELECT MAX(r.finish_time) FROM export_runs r
		WHERE r.schedule_id = schedules.id AND r.state IN ('SUCCEEDED', 'SKIPPED'))
	WHERE last_success_time IS NULL`)
	if err != nil {
		return fmt.Errorf("backfill schedules.last_success_time: %w", err)
	}
	return nil
}

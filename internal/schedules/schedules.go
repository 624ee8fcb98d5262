// Package schedules holds the schedule use cases below the RPC handlers
// that decide something beyond the request's shape: pausing, resuming (the
// schedule must still have its integration and lie under its destination)
// and whether a Send now may start. Typed errors are mapped to gRPC
// statuses in server/errors.go.
package schedules

import (
	"context"
	"fmt"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/cron"
	"github.com/auditexport/auditexport/internal/destination"
)

// PreconditionError is a documented FAILED_PRECONDITION of a schedule
// (docs/api.md lists the reasons).
type PreconditionError struct {
	reason, msg string
}

// Reason is the ErrorInfo reason.
func (e *PreconditionError) Reason() string { return e.reason }
func (e *PreconditionError) Error() string  { return e.msg }

// The reasons.
const (
	ReasonWorkbookNotSaved      = "WORKBOOK_NOT_SAVED"
	ReasonIntegrationDeleted    = "INTEGRATION_DELETED"
	ReasonURIOutsideDestination = "URI_OUTSIDE_DESTINATION"
	ReasonRunInProgress         = "RUN_IN_PROGRESS"
)

// ErrWorkbookNotSaved: only saved workbooks can be scheduled.
var ErrWorkbookNotSaved = &PreconditionError{ReasonWorkbookNotSaved,
	"only saved workbooks can be scheduled: save the exploration first (SaveWorkbookAs)"}

// Pause pauses sc by the user's request: no next run; runs already due
// still deliver their periods.
func Pause(ctx context.Context, c *ent.Client, id string) (*ent.Schedule, error) {
	return c.Schedule.UpdateOneID(id).SetState(schedule.StatePAUSED).
		SetPauseReason(schedule.PauseReasonUSER).ClearNextRunTime().Save(ctx)
}

// Resume makes sc active again from now: failures reset, next run
// recomputed. It must still have its integration, and its URI must lie
// under that integration's destination (the destination may have changed
// while it was paused).
func Resume(ctx context.Context, c *ent.Client, sc *ent.Schedule, now time.Time) (*ent.Schedule, error) {
	if sc.IntegrationID == "" {
		return nil, &PreconditionError{ReasonIntegrationDeleted,
			"the schedule's storage integration was deleted: point destination at another integration (UpdateSchedule) before resuming"}
	}
	integ, err := c.StorageIntegration.Get(ctx, sc.IntegrationID)
	if err != nil {
		return nil, fmt.Errorf("load integration: %w", err)
	}
	base, err := destination.ParseDestination(destination.Provider(integ.Provider), integ.Destination)
	if err == nil {
		_, err = destination.ValidateObjectURI(base, sc.URI)
	}
	if err != nil {
		return nil, &PreconditionError{ReasonURIOutsideDestination,
			"the schedule's uri no longer lies under its integration's destination (" + err.Error() + "): update the schedule's destination first"}
	}
	cr, err := cron.Parse(sc.Cron, sc.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("parse stored cron: %w", err)
	}
	upd := c.Schedule.UpdateOneID(sc.ID).SetState(schedule.StateACTIVE).ClearPauseReason().SetConsecutiveFailures(0)
	if next := cr.Next(now); !next.IsZero() {
		upd.SetNextRunTime(next)
	}
	return upd.Save(ctx)
}

// CheckSendNow says whether a Send now of sc may start: it needs its
// integration, and an incremental schedule runs one export at a time.
// (The run checks its owner's authorization again when it starts.)
func CheckSendNow(ctx context.Context, c *ent.Client, sc *ent.Schedule) error {
	if sc.IntegrationID == "" {
		return &PreconditionError{ReasonIntegrationDeleted,
			"the schedule's storage integration was deleted: point its destination at another integration first"}
	}
	if sc.Mode != schedule.ModeINCREMENTAL {
		return nil
	}
	busy, err := c.ExportRun.Query().Where(exportrun.ScheduleID(sc.ID), exportrun.StateEQ(exportrun.StateRUNNING)).Exist(ctx)
	if err != nil {
		return fmt.Errorf("check running runs: %w", err)
	}
	if busy {
		return &PreconditionError{ReasonRunInProgress,
			"a run of this incremental schedule is in progress; runs of one incremental schedule never overlap (watch it with WatchExportRun)"}
	}
	return nil
}

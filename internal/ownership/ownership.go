// Package ownership decides whether a user may own, and so run, schedules.
// A schedule runs with its owner's authority, not with that of whoever
// created or last edited it, so the rule is checked when a schedule is made,
// again at the start of every run, and when it is edited or resumed; a user
// who loses it has their schedules paused with OWNER_NOT_AUTHORIZED.
package ownership

import (
	"context"
	"errors"
	"fmt"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/connectiongrant"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/ent/user"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/auth"
)

// Code is the run error code and the ErrorInfo reason of a schedule whose
// owner may no longer own schedules.
const Code = "OWNER_NOT_AUTHORIZED"

// Error says why a schedule's owner may not run it.
type Error struct {
	OwnerID string
	Why     string
}

func (e *Error) Error() string {
	return fmt.Sprintf("the schedule's owner %s may no longer own schedules: %s", e.OwnerID, e.Why)
}

// Why is the reason u may not own schedules, or "" when they may: an active
// ADMIN, or an active CREATOR granted the Audit Logs connection (the rule
// CreateSchedule applies to its caller). u nil is a deleted user.
func Why(u *ent.User, granted bool) string {
	switch {
	case u == nil:
		return "the user no longer exists"
	case !u.Active:
		return "the user is deactivated"
	case u.AccountType == user.AccountTypeADMIN:
		return ""
	case u.AccountType != user.AccountTypeCREATOR:
		return "a " + string(u.AccountType) + " may not own schedules"
	case !granted:
		return "the user has no access to connection " + auditlog.ConnectionID
	}
	return ""
}

// Check returns an *Error when ownerID may not own schedules, another error
// when that could not be decided, nil when they may. c may be a
// transaction's client.
func Check(ctx context.Context, c *ent.Client, ownerID string) error {
	u, err := c.User.Get(ctx, ownerID)
	if ent.IsNotFound(err) {
		u, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("load owner: %w", err)
	}
	granted := false
	if u != nil {
		if granted, err = c.ConnectionGrant.Query().Where(connectiongrant.UserID(u.ID),
			connectiongrant.ConnectionID(auditlog.ConnectionID)).Exist(ctx); err != nil {
			return fmt.Errorf("load owner's grant: %w", err)
		}
	}
	if why := Why(u, granted); why != "" {
		return &Error{OwnerID: ownerID, Why: why}
	}
	return nil
}

// CheckCaller is Check for a request: when the caller is the owner, their
// principal — read with their API key in this request, so an existing,
// active user with their account type and grants — decides without reading
// the user and their grant again (two round trips on the path of every
// Send now). Any other caller (an ADMIN acting on another user's schedule)
// is Check.
func CheckCaller(ctx context.Context, c *ent.Client, ownerID string) error {
	p := auth.FromContext(ctx)
	if p == nil || p.UserID == "" || p.UserID != ownerID {
		return Check(ctx, c, ownerID)
	}
	u := &ent.User{ID: p.UserID, Active: true, AccountType: user.AccountType(p.AccountType)}
	if why := Why(u, p.Grants[auditlog.ConnectionID]); why != "" {
		return &Error{OwnerID: ownerID, Why: why}
	}
	return nil
}

// PauseIfUnauthorized pauses userID's ACTIVE schedules with
// OWNER_NOT_AUTHORIZED when the user may no longer own schedules and
// returns their ids. Call it with the client of the transaction that changed
// the user or their grant, so the change and the pause commit together.
// Schedules paused for another reason keep it: resuming them checks the
// owner anyway.
func PauseIfUnauthorized(ctx context.Context, c *ent.Client, userID string) ([]string, error) {
	var denied *Error
	if err := Check(ctx, c, userID); !errors.As(err, &denied) {
		return nil, err
	}
	return pauseOwnedBy(ctx, c, userID)
}

// PauseSchedule pauses one schedule with OWNER_NOT_AUTHORIZED if it is
// ACTIVE (the safety net at run time); it reports whether it did.
func PauseSchedule(ctx context.Context, c *ent.Client, scheduleID string) (bool, error) {
	n, err := c.Schedule.Update().Where(schedule.ID(scheduleID), schedule.StateEQ(schedule.StateACTIVE)).
		SetState(schedule.StatePAUSED).SetPauseReason(schedule.PauseReasonOWNER_NOT_AUTHORIZED).ClearNextRunTime().Save(ctx)
	return n > 0, err
}

func pauseOwnedBy(ctx context.Context, c *ent.Client, userID string) ([]string, error) {
	active := schedule.And(schedule.OwnerID(userID), schedule.StateEQ(schedule.StateACTIVE))
	ids, err := c.Schedule.Query().Where(active).IDs(ctx)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	if err := c.Schedule.Update().Where(schedule.IDIn(ids...)).SetState(schedule.StatePAUSED).
		SetPauseReason(schedule.PauseReasonOWNER_NOT_AUTHORIZED).ClearNextRunTime().Exec(ctx); err != nil {
		return nil, err
	}
	return ids, nil
}

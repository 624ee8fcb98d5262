// Package revision is optimistic concurrency for the PATCH RPCs: a
// resource's update_time is its revision. A client that sends the
// update_time it read gets ABORTED (StaleError) when the resource changed
// since; every update is also conditional on the update_time the command
// read (ErrConcurrent), so two writers that read the same version cannot
// both win silently.
//
// update_time moves on every change a user can see (fields, state, pause)
// and not on bookkeeping (a schedule's next run time, last run, watermark):
// those writes run with Bookkeeping(ctx), so a browser tab left open is
// not made stale by the scheduler.
package revision

import (
	"context"
	"errors"
	"fmt"
	"time"
)

type bookkeepingKey struct{}

// Bookkeeping marks ctx's updates as bookkeeping: update_time stays.
func Bookkeeping(ctx context.Context) context.Context {
	return context.WithValue(ctx, bookkeepingKey{}, true)
}

// IsBookkeeping reports whether ctx's updates leave update_time alone.
func IsBookkeeping(ctx context.Context) bool {
	b, _ := ctx.Value(bookkeepingKey{}).(bool)
	return b
}

// StaleError: the update_time a client sent is not the resource's current
// one — it changed since the client read it.
type StaleError struct {
	Kind          string // "schedule", "storage integration", ...
	Sent, Current time.Time
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("the %s changed since it was read (update_time %s sent, %s now): read it again and reapply the change",
		e.Kind, e.Sent.UTC().Format(time.RFC3339Nano), e.Current.UTC().Format(time.RFC3339Nano))
}

// Reason is the ErrorInfo reason (docs/api.md).
func (e *StaleError) Reason() string { return "STALE_UPDATE_TIME" }

// ErrConcurrent: the resource changed between the command's read and its
// write (another request updated it at the same moment).
var ErrConcurrent = errors.New("changed by another request at the same moment: read it again and retry")

// Check refuses the update when sent (nil: the client sent none, no
// check) is not cur. Times are compared to the microsecond, the
// precision PostgreSQL keeps.
func Check(kind string, sent *time.Time, cur time.Time) error {
	if sent == nil || Same(*sent, cur) {
		return nil
	}
	return &StaleError{Kind: kind, Sent: *sent, Current: cur}
}

// Same reports whether a and b are the same instant to the microsecond
// (rounded, as PostgreSQL stores it).
func Same(a, b time.Time) bool {
	return a.Round(time.Microsecond).Equal(b.Round(time.Microsecond))
}

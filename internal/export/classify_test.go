package export

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
)

// TestClassify: every way a run can end, decided by the one function.
func TestClassify(t *testing.T) {
	scheduled := func(attempt int) *ent.ExportRun {
		return &ent.ExportRun{Trigger: exportrun.TriggerSCHEDULED, Attempt: attempt}
	}
	manual := &ent.ExportRun{Trigger: exportrun.TriggerSEND_NOW, Attempt: 1}
	provider := &RunError{Code: "PROVIDER_ACCESS_DENIED", Message: "denied"}
	paused := &RunError{Code: "SCHEDULE_PAUSED", Message: "paused"}
	for _, tc := range []struct {
		name     string
		err      error
		cause    error
		skipped  bool
		run      *ent.ExportRun
		state    exportrun.State
		code     string
		requeue  bool
		attempt  int
		internal bool
	}{
		{name: "delivered", run: manual, state: exportrun.StateSUCCEEDED},
		{name: "send condition", skipped: true, run: scheduled(1), state: exportrun.StateSKIPPED},
		{name: "canceled by request", err: context.Canceled, cause: errCanceled, run: manual, state: exportrun.StateCANCELED, code: "CANCELED"},
		{name: "schedule paused meanwhile", err: fmt.Errorf("load: %w", paused), run: scheduled(1), state: exportrun.StateCANCELED, code: "SCHEDULE_PAUSED"},
		{name: "scheduled behind a running incremental run", err: errRunInProgress, run: scheduled(2), requeue: true, attempt: 1},
		{name: "Send now behind a running incremental run", err: errRunInProgress, run: manual, state: exportrun.StateFAILED, code: "RUN_IN_PROGRESS"},
		{name: "shutdown, scheduled", err: context.Canceled, cause: errShutdown, run: scheduled(2), requeue: true, attempt: 2},
		{name: "shutdown, scheduled, last attempt", err: context.Canceled, cause: errShutdown, run: scheduled(maxScheduledAttempts), state: exportrun.StateFAILED, code: "INTERRUPTED"},
		{name: "shutdown, Send now", err: context.Canceled, cause: errShutdown, run: manual, state: exportrun.StateFAILED, code: "INTERRUPTED"},
		{name: "provider refusal", err: fmt.Errorf("upload: %w", provider), run: scheduled(1), state: exportrun.StateFAILED, code: "PROVIDER_ACCESS_DENIED"},
		{name: "our own error", err: errors.New("boom"), run: manual, state: exportrun.StateFAILED, code: "INTERNAL", internal: true},
		// Which reason wins when several hold.
		{name: "canceled by request wins over the provider's error", err: provider, cause: errCanceled, run: scheduled(1), state: exportrun.StateCANCELED, code: "CANCELED"},
		{name: "canceled by request wins over the pause", err: paused, cause: errCanceled, run: scheduled(1), state: exportrun.StateCANCELED, code: "CANCELED"},
		{name: "paused wins over shutdown", err: paused, cause: errShutdown, run: scheduled(1), state: exportrun.StateCANCELED, code: "SCHEDULE_PAUSED"},
		{name: "a running incremental run wins over shutdown", err: errRunInProgress, cause: errShutdown, run: scheduled(maxScheduledAttempts), requeue: true, attempt: maxScheduledAttempts - 1},
		{name: "skipped wins over shutdown", skipped: true, cause: errShutdown, run: scheduled(1), state: exportrun.StateSKIPPED},
		{name: "delivered though canceled after the upload", cause: errCanceled, run: manual, state: exportrun.StateSUCCEEDED},
		{name: "load failed during shutdown", err: errors.New("db down"), cause: errShutdown, state: exportrun.StateFAILED, code: "INTERRUPTED"},
		{name: "a run error before the run was read", err: &RunError{Code: "SCHEDULE_NOT_FOUND", Message: "gone"}, state: exportrun.StateFAILED, code: "SCHEDULE_NOT_FOUND"},
		{name: "load failed before the run was read", err: errors.New("db down"), state: exportrun.StateFAILED, code: "INTERNAL", internal: true},
	} {
		got := classify(tc.err, tc.cause, tc.skipped, tc.run)
		code := ""
		if got.err != nil {
			code = got.err.Code
		}
		if got.requeue != tc.requeue || got.attempt != tc.attempt || got.internal != tc.internal || code != tc.code ||
			(!tc.requeue && got.state != tc.state) {
			t.Errorf("%s: got %+v (code %q), want state %s code %q requeue %v attempt %d internal %v",
				tc.name, got, code, tc.state, tc.code, tc.requeue, tc.attempt, tc.internal)
		}
	}
}

// TestDBUnreachable: connection failures are retried by a run's attempts,
// errors of the query itself are not.
func TestDBUnreachable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("scan rows: %w", io.ErrUnexpectedEOF), true},
		{fmt.Errorf("query: %w", driver.ErrBadConn), true},
		{&pgconn.ConnectError{}, true},
		{errors.New("read: conn closed"), true},
		{errors.New(`ERROR: column "x" does not exist (SQLSTATE 42703)`), false},
		{errors.New("sql: no rows in result set"), false},
	} {
		if got := dbUnreachable(c.err); got != c.want {
			t.Errorf("dbUnreachable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

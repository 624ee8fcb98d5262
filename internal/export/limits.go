package export

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
)

// manualRunLockKey is the PostgreSQL advisory lock that serialises the
// count-then-insert of Send now runs across replicas.
const manualRunLockKey = 7_004_203

// ManualRetryAfter is what a refused Send now is told to wait.
const ManualRetryAfter = 10 * time.Second

// ManualRunLimitError refuses a Send now: too many manual runs are queued or
// running in the organization (all replicas) or in this server process.
type ManualRunLimitError struct {
	Scope string // "organization" or "server"
	Limit int
}

func (e *ManualRunLimitError) Error() string {
	return fmt.Sprintf("%d Send now runs are already queued or running in this %s; wait for one to finish", e.Limit, e.Scope)
}

// createRun inserts the run row. A Send now is first counted against the
// organization's limit in the database, so it holds across replicas: on
// PostgreSQL the count and the insert run in one transaction under an
// advisory lock; SQLite has a single server process, where manualMu alone
// serialises them. (The per-process limit is counted in memory: see
// reserveManual.)
//
// On PostgreSQL the transaction is driven on one connection of the pool
// (one per process at a time, under manualMu) so that BEGIN and the lock
// travel in one round trip (a statement without arguments goes out in
// PostgreSQL's simple protocol, which takes several): a Send now's first
// progress message waits for these round trips, and under load each costs
// milliseconds (docs/BENCHMARKS.md, progress).
//
// A Send now takes one of this process's slots (reserveManual) after the
// organization's count admitted it, so a refusal names the organization's
// limit first, as before; slot says whether the run took one (not for
// other runs, nor without a per-process limit). Start files it under the
// run (holdManual).
func (r *Runner) createRun(ctx context.Context, scheduleID, trigger, requestedBy string) (run *ent.ExportRun, slot bool, err error) {
	create := func(c *ent.Client) (*ent.ExportRun, error) {
		return c.ExportRun.Create().SetScheduleID(scheduleID).SetTrigger(exportrun.Trigger(trigger)).
			SetRequestedBy(requestedBy).SetRunner(r.cfg.RunnerID).Save(ctx)
	}
	if trigger != exportrun.TriggerSEND_NOW.String() {
		run, err = create(r.d.Client)
		return run, false, err
	}
	perOrg := r.cfg.MaxManualRunsPerOrg
	reserved := false // not the named result: a failing return clears that before the defer reads it
	// admit counts the organization's Send now runs (ctx carries the org:
	// scoped to it), then takes a slot of this process.
	admit := func(c *ent.Client) error {
		if perOrg > 0 {
			n, err := c.ExportRun.Query().Where(exportrun.TriggerEQ(exportrun.TriggerSEND_NOW),
				exportrun.StateIn(exportrun.StateQUEUED, exportrun.StateRUNNING)).Count(ctx)
			if err != nil {
				return err
			}
			if n >= perOrg {
				return &ManualRunLimitError{Scope: "organization", Limit: perOrg}
			}
		}
		var err error
		reserved, err = r.reserveManual()
		return err
	}
	defer func() {
		if err != nil && reserved {
			r.unreserveManual()
		}
	}()
	if perOrg > 0 {
		// On PostgreSQL too: one connection of this process at a time
		// waits for the advisory lock, not a pool's worth of them.
		r.manualMu.Lock()
		defer r.manualMu.Unlock()
	}
	if perOrg <= 0 || r.d.Dialect != dialect.Postgres {
		if err := admit(r.d.Client); err != nil {
			return nil, false, err
		}
		if run, err = create(r.d.Client); err != nil {
			return nil, false, err
		}
		return run, reserved, nil
	}
	conn, err := beginManualTx(ctx, r.d.SQL)
	if err != nil {
		return nil, false, err
	}
	defer conn.Close()
	done := false
	defer func() {
		if !done {
			_ = endManualTx(ctx, conn, "ROLLBACK")
		}
	}()
	c := ent.NewClient(ent.Driver(entsql.NewDriver(dialect.Postgres, entsql.Conn{ExecQuerier: conn})))
	if err := admit(c); err != nil {
		return nil, false, err
	}
	if run, err = create(c); err != nil {
		return nil, false, err
	}
	done = true
	if err = endManualTx(ctx, conn, "COMMIT"); err != nil {
		return nil, false, err
	}
	return run, reserved, nil
}

// manualTxBegin opens createRun's transaction and takes the lock in one
// round trip. READ COMMITTED is explicit: the COUNT after it must take its
// snapshot after the lock was granted, which a server-wide default of
// REPEATABLE READ would not (its snapshot would be the lock statement's).
var manualTxBegin = fmt.Sprintf("BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(%d)", manualRunLockKey)

// manualTxEndTimeout bounds COMMIT and ROLLBACK, which run even after the
// caller went away: a connection that stopped answering must not hold the
// lock for every replica until TCP gives up.
const manualTxEndTimeout = 15 * time.Second

// beginManualTx takes a connection of the pool and begins createRun's
// transaction on it. A pooled connection found dead before the statement
// was sent (pgx then reports driver.ErrBadConn, and database/sql drops it)
// is replaced, as database/sql does for statements on the pool.
func beginManualTx(ctx context.Context, pool *sql.DB) (*sql.Conn, error) {
	for attempt := 1; ; attempt++ {
		conn, err := pool.Conn(ctx)
		if err != nil {
			return nil, err
		}
		if _, err = conn.ExecContext(ctx, manualTxBegin); err == nil {
			return conn, nil
		}
		if !errors.Is(err, driver.ErrBadConn) || attempt == 3 {
			_ = endManualTx(ctx, conn, "ROLLBACK")
			_ = conn.Close()
			return nil, fmt.Errorf("manual run lock: %w", err)
		}
		_ = conn.Close()
	}
}

// endManualTx ends createRun's transaction with COMMIT or ROLLBACK. If that
// fails, the connection's state is unknown (still inside the transaction?),
// so it is closed at once — driver.ErrBadConn from Raw makes database/sql
// close it — rather than left to the pool's check on its next checkout
// (pgx's ResetSession refuses a connection inside a transaction); either way
// it is never handed out again (TestEndManualTxDropsAFailedConnection).
// (PostgreSQL itself releases a transaction's locks when a statement in it
// fails, before the ROLLBACK.)
func endManualTx(ctx context.Context, conn *sql.Conn, stmt string) error {
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), manualTxEndTimeout)
	defer cancel()
	if _, err := conn.ExecContext(ectx, stmt); err != nil {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		return fmt.Errorf("%s: %w", strings.ToLower(stmt), err)
	}
	return nil
}

// reserveManual takes one of this process's Send now slots
// (--max-manual-runs) for a run about to be created (see createRun); it
// reports whether it took one (false: no limit). unreserveManual gives an
// unused one back; once the run exists, holdManual files the slot under
// its id and releaseManual gives it back — finish calls it before the
// run's final message goes out, so a client that saw its run end may start
// the next at once. The slots are counted in memory: they are this
// process's own runs, and counting them in the database cost a round trip
// on every Send now.
func (r *Runner) reserveManual() (bool, error) {
	limit := r.cfg.MaxManualRuns
	if limit <= 0 {
		return false, nil
	}
	r.slotMu.Lock()
	defer r.slotMu.Unlock()
	if r.manualActive >= limit {
		return false, &ManualRunLimitError{Scope: "server", Limit: limit}
	}
	r.manualActive++
	return true, nil
}

func (r *Runner) unreserveManual() {
	r.slotMu.Lock()
	defer r.slotMu.Unlock()
	r.manualActive--
}

// holdManual files a reserved slot under its run.
func (r *Runner) holdManual(runID string) {
	r.slotMu.Lock()
	defer r.slotMu.Unlock()
	r.manualRuns[runID] = struct{}{}
}

// releaseManual gives back the slot of runID, if it holds one (once).
func (r *Runner) releaseManual(runID string) {
	r.slotMu.Lock()
	defer r.slotMu.Unlock()
	if _, ok := r.manualRuns[runID]; ok {
		delete(r.manualRuns, runID)
		r.manualActive--
	}
}

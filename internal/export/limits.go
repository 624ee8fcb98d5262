package export

import (
	"context"
	"fmt"
	"time"

	"entgo.io/ent/dialect"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/internal/tenant"
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

// createRun inserts the run row. Send now runs are counted first, in the
// database, so the limits hold across replicas: on PostgreSQL the count and
// the insert run in one transaction under an advisory lock; SQLite has a
// single server process, where manualMu alone serialises them.
func (r *Runner) createRun(ctx context.Context, scheduleID, trigger, requestedBy string) (*ent.ExportRun, error) {
	create := func(c *ent.Client) (*ent.ExportRun, error) {
		return c.ExportRun.Create().SetScheduleID(scheduleID).SetTrigger(exportrun.Trigger(trigger)).
			SetRequestedBy(requestedBy).SetRunner(r.cfg.RunnerID).Save(ctx)
	}
	perOrg, perServer := r.cfg.MaxManualRunsPerOrg, r.cfg.MaxManualRuns
	if trigger != exportrun.TriggerSEND_NOW.String() || (perOrg <= 0 && perServer <= 0) {
		return create(r.d.Client)
	}
	r.manualMu.Lock()
	defer r.manualMu.Unlock()
	client := r.d.Client
	var tx *ent.Tx
	if r.d.Dialect == dialect.Postgres {
		var err error
		if tx, err = r.d.Client.Tx(ctx); err != nil {
			return nil, err
		}
		defer func() { _ = tx.Rollback() }()
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", manualRunLockKey); err != nil {
			return nil, fmt.Errorf("manual run lock: %w", err)
		}
		client = tx.Client()
	}
	active := client.ExportRun.Query().Where(exportrun.TriggerEQ(exportrun.TriggerSEND_NOW),
		exportrun.StateIn(exportrun.StateQUEUED, exportrun.StateRUNNING))
	if perOrg > 0 {
		n, err := active.Clone().Count(ctx) // ctx carries the org: scoped to it
		if err != nil {
			return nil, err
		}
		if n >= perOrg {
			return nil, &ManualRunLimitError{Scope: "organization", Limit: perOrg}
		}
	}
	if perServer > 0 {
		n, err := active.Clone().Where(exportrun.Runner(r.cfg.RunnerID)).Count(tenant.System(tenant.WithOrg(ctx, "")))
		if err != nil {
			return nil, err
		}
		if n >= perServer {
			return nil, &ManualRunLimitError{Scope: "server", Limit: perServer}
		}
	}
	run, err := create(client)
	if err != nil || tx == nil {
		return run, err
	}
	return run, tx.Commit()
}

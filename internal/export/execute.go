package export

import (
	"context"

	"github.com/auditexport/auditexport/internal/tenant"
)

// Execute runs an existing run claimed by the scheduler's dispatcher, to
// completion (it blocks). It is the same path as Send now after the run
// row exists: load, query, encode, upload, finish.
func (r *Runner) Execute(_ context.Context, orgID, runID string) {
	r.mu.Lock()
	if r.draining {
		r.mu.Unlock()
		return // the rescue requeues it on a live replica
	}
	rctx, cancel := context.WithCancelCause(tenant.WithOrg(r.base, orgID))
	r.cancels[runID] = cancel
	r.wg.Add(1)
	r.mu.Unlock()
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.cancels, runID)
		r.mu.Unlock()
		cancel(nil)
	}()
	r.broker.open(Progress{RunID: runID, Phase: PhaseQueued, Time: r.now().UTC()})
	r.execute(rctx, runID)
}

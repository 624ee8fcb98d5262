package export

import (
	"context"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/internal/tenant"
)

// Execute runs an existing run claimed by the scheduler's dispatcher, to
// completion (it blocks). It is the same path as Send now after the run
// row exists: load, query, encode, upload, finish. run is the row as read
// after the claim (load does not read it again).
func (r *Runner) Execute(_ context.Context, run *ent.ExportRun) {
	orgID, runID := run.OrgID, run.ID
	rctx, _, end, ok := r.begin(orgID, runID)
	if !ok {
		// Draining: release the claim at once so a live replica takes the
		// run now, rather than after the orphan sweep notices the missing
		// heartbeat.
		err := r.d.Client.ExportRun.UpdateOneID(runID).SetRunner("").ClearHeartbeatTime().
			Exec(tenant.WithOrg(context.Background(), orgID))
		if err != nil {
			r.log.Error("releasing a claimed run during shutdown failed", "run_id", runID, "err", err.Error())
		}
		return
	}
	defer end()
	r.execute(rctx, runID, run)
}

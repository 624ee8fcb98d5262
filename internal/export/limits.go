package export

import (
	"context"
	"fmt"
	"strings"
	"time"

	"entgo.io/ent/dialect"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/user"
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

// NotifyAllowed reports whether failure mail may go to addr: a user of the
// organization (members holds their lower-cased e-mails) or an address in
// one of domains.
func NotifyAllowed(addr string, members map[string]bool, domains []string) bool {
	addr = strings.ToLower(strings.TrimSpace(addr))
	if members[addr] {
		return true
	}
	at := strings.LastIndex(addr, "@")
	if at < 0 {
		return false
	}
	for _, d := range domains {
		if strings.EqualFold(addr[at+1:], strings.TrimPrefix(strings.TrimSpace(d), "@")) {
			return true
		}
	}
	return false
}

// allowedRecipients drops notify_emails that are no longer allowed (a user
// who left the organization, a domain the operator removed): schedules
// saved before the rule, or before the change, mail nobody outside it.
func (r *Runner) allowedRecipients(ctx context.Context, emails []string) []string {
	if len(emails) == 0 {
		return nil
	}
	users, err := r.d.Client.User.Query().Select(user.FieldEmail).Strings(ctx)
	if err != nil {
		r.log.Error("loading the organization's users for notification failed", "err", err.Error())
		return nil
	}
	members := map[string]bool{}
	for _, u := range users {
		members[strings.ToLower(u)] = true
	}
	var out []string
	for _, e := range emails {
		if NotifyAllowed(e, members, r.cfg.NotifyAllowedDomains) {
			out = append(out, e)
		}
	}
	return out
}

// Package retention bounds the growth of run history and of the audit log.
//
// A background job (Loop) deletes, in batches:
//   - export runs that ended (SUCCEEDED, FAILED, CANCELED, SKIPPED) longer
//     than RunHistory ago, except each schedule's latest run (what the
//     schedule's "last run" shows); QUEUED and RUNNING runs are never
//     touched;
//   - audit events recorded longer than AuditLog ago, except rows an
//     incremental schedule (ACTIVE or PAUSED: a paused one resumes from
//     its watermark) of the same organisation has not exported yet (id
//     above its watermark): retention never makes an incremental export
//     skip rows.
//
// Each purge that deleted audit events records one RETENTION_PURGE event in
// that organisation (counts and cut-off, no event contents). Zero durations
// keep everything. Replicas may run the job concurrently: the deletes are
// idempotent.
package retention

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"entgo.io/ent/dialect/sql"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/auditevent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/organization"
	"github.com/auditexport/auditexport/ent/predicate"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/tenant"
)

// Config is what to keep.
type Config struct {
	RunHistory time.Duration // 0: keep every run
	AuditLog   time.Duration // 0: keep every audit event
	Batch      int           // rows per delete statement (default 5000)
}

// Result counts what one pass deleted.
type Result struct{ Runs, Events int64 }

var ended = []exportrun.State{exportrun.StateSUCCEEDED, exportrun.StateFAILED, exportrun.StateCANCELED, exportrun.StateSKIPPED}

// Enforce deletes what cfg no longer keeps as of now.
func Enforce(ctx context.Context, d *db.DB, rec *auditlog.Recorder, cfg Config, now time.Time) (Result, error) {
	if cfg.Batch <= 0 {
		cfg.Batch = 5000
	}
	sctx := tenant.System(ctx)
	var res Result
	if cfg.RunHistory > 0 {
		n, err := purgeRuns(sctx, d.Client, now.Add(-cfg.RunHistory).UTC(), cfg.Batch)
		res.Runs = n
		if err != nil {
			return res, fmt.Errorf("run history: %w", err)
		}
	}
	if cfg.AuditLog > 0 {
		orgs, err := d.Client.Organization.Query().Select(organization.FieldID).Strings(sctx)
		if err != nil {
			return res, err
		}
		cutoff := now.Add(-cfg.AuditLog).UTC().Truncate(time.Microsecond)
		for _, org := range orgs {
			n, bound, err := purgeEvents(sctx, d.Client, org, cutoff, cfg.Batch)
			res.Events += n
			if err != nil {
				return res, fmt.Errorf("audit log of %s: %w", org, err)
			}
			if n > 0 && rec != nil {
				meta := map[string]any{"deleted_events": n, "older_than": cutoff.Format(time.RFC3339), "retention": cfg.AuditLog.String()}
				if bound >= 0 {
					meta["kept_from_seq"] = bound + 1 // rows an incremental schedule has not exported yet
				}
				if _, err := rec.Record(tenant.WithOrg(ctx, org), auditlog.Event{OrgID: org, Category: "SYSTEM", Type: "RETENTION_PURGE",
					AccountType: "SYSTEM", Metadata: meta}); err != nil {
					return res, err
				}
			}
		}
	}
	return res, nil
}

// purgeRuns deletes ended runs that finished before cutoff and are not
// their schedule's latest.
func purgeRuns(ctx context.Context, c *ent.Client, cutoff time.Time, batch int) (int64, error) {
	var total int64
	for {
		ids, err := c.ExportRun.Query().
			Where(exportrun.StateIn(ended...), exportrun.FinishTimeNotNil(), exportrun.FinishTimeLT(cutoff), newerRunExists).
			Limit(batch).IDs(ctx)
		if err != nil || len(ids) == 0 {
			return total, err
		}
		n, err := c.ExportRun.Delete().Where(exportrun.IDIn(ids...)).Exec(ctx)
		total += int64(n)
		if err != nil || len(ids) < batch {
			return total, err
		}
	}
}

// newerRunExists: the schedule has a run created after this one.
func newerRunExists(s *sql.Selector) {
	newer := sql.Table(exportrun.Table).As("newer")
	s.Where(sql.Exists(sql.Select(newer.C(exportrun.FieldID)).From(newer).Where(sql.And(
		sql.ColumnsEQ(newer.C(exportrun.FieldScheduleID), s.C(exportrun.FieldScheduleID)),
		sql.ColumnsGT(newer.C(exportrun.FieldCreateTime), s.C(exportrun.FieldCreateTime)),
	))))
}

// purgeEvents deletes org's events recorded before cutoff, up to the lowest
// watermark of its incremental schedules; bound is that watermark (-1: no
// incremental schedule, no bound).
func purgeEvents(ctx context.Context, c *ent.Client, org string, cutoff time.Time, batch int) (n int64, bound int64, err error) {
	octx := tenant.WithOrg(ctx, org)
	bound = -1
	marks, err := c.Schedule.Query().Where(schedule.ModeEQ(schedule.ModeINCREMENTAL)).Select(schedule.FieldWatermark).Ints(octx)
	if err != nil {
		return 0, bound, err
	}
	for _, w := range marks {
		if bound < 0 || int64(w) < bound {
			bound = int64(w)
		}
	}
	where := []predicate.AuditEvent{auditevent.RequestTimeLT(cutoff)}
	if bound >= 0 {
		where = append(where, auditevent.IDLTE(bound))
	}
	for {
		ids, err := c.AuditEvent.Query().Where(where...).Order(ent.Asc(auditevent.FieldID)).Limit(batch).IDs(octx)
		if err != nil || len(ids) == 0 {
			return n, bound, err
		}
		k, err := c.AuditEvent.Delete().Where(auditevent.IDIn(ids...)).Exec(octx)
		n += int64(k)
		if err != nil || len(ids) < batch {
			return n, bound, err
		}
	}
}

// Loop enforces cfg every interval until ctx ends (now is the clock).
func Loop(ctx context.Context, d *db.DB, rec *auditlog.Recorder, cfg Config, interval time.Duration, now func() time.Time, log *slog.Logger) {
	if cfg.RunHistory <= 0 && cfg.AuditLog <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		res, err := Enforce(ctx, d, rec, cfg, now())
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("retention pass failed; retried at the next interval", "err", err.Error(), "runs_deleted", res.Runs, "events_deleted", res.Events)
		case res.Runs > 0 || res.Events > 0:
			log.Info("retention pass", "runs_deleted", res.Runs, "events_deleted", res.Events)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/cron"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/ids"
	"github.com/auditexport/auditexport/internal/metrics"
	"github.com/auditexport/auditexport/internal/revision"
	"github.com/auditexport/auditexport/internal/tenant"
)

// Executor runs a claimed export run to completion (export.Runner). run
// is its row as read right after the claim committed (claimed by this
// process).
type Executor interface {
	Execute(ctx context.Context, run *ent.ExportRun)
}

// DispatcherConfig tunes the dispatcher.
type DispatcherConfig struct {
	Tick     time.Duration // how often due schedules are looked for (default 1s)
	Slots    int           // concurrent scheduled runs in this process (default 4)
	RunnerID string        // this process, as stored in export_runs.runner (default ids.Process())
	Batch    int           // due schedules dispatched per transaction (default 500)
}

// Dispatcher turns due schedules into runs and executes queued runs.
//
// Why not River's periodic jobs: they run only on the elected leader and
// are not durable across restarts, so next_run_time must live in our
// tables anyway; River would then only be a queue, and its SQLite driver
// needs its own single-connection pool. The queue here is the export_runs
// table itself, claimed with SELECT ... FOR UPDATE SKIP LOCKED on
// PostgreSQL (SQLite has a single writer and a single process):
//
//  1. In one transaction, due schedules are locked, one QUEUED run per
//     (schedule, period) is inserted — a unique (schedule_id, dedup_key)
//     index makes a second insert for the same period impossible — and
//     next_run_time is advanced. A crash before commit changes nothing; a
//     crash after commit leaves a QUEUED run that any replica claims.
//  2. Workers claim QUEUED runs (runner=”) up to their free slots and
//     execute them; the run's heartbeat shows it is alive.
//  3. Runs whose heartbeat stopped (the process died) are requeued by the
//     export runner's rescue, with attempt+1.
type Dispatcher struct {
	d    *db.DB
	exec Executor
	log  *slog.Logger
	cfg  DispatcherConfig
	now  func() time.Time

	mu      sync.Mutex
	running int
	wg      sync.WaitGroup
	wake    chan struct{} // claim now (Run's claimer): a tick, a dispatched batch, a finished run
	claimMu sync.Mutex    // one claim at a time: each counts the free slots
	metrics *metrics.Metrics
}

// WithMetrics samples the queue depth and the running runs into m at each
// tick (nil: none).
func (ds *Dispatcher) WithMetrics(m *metrics.Metrics) *Dispatcher {
	ds.metrics = m
	return ds
}

// NewDispatcher builds a dispatcher; now is the clock (time.Now in production).
func NewDispatcher(d *db.DB, exec Executor, log *slog.Logger, cfg DispatcherConfig, now func() time.Time) *Dispatcher {
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.Slots <= 0 {
		cfg.Slots = 4
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.RunnerID == "" {
		// An empty runner means "unclaimed": claiming with it would leave
		// the run claimable by the next tick and execute it again.
		cfg.RunnerID = ids.Process()
	}
	return &Dispatcher{d: d, exec: exec, log: log, cfg: cfg, now: now, wake: make(chan struct{}, 1)}
}

// Run ticks until ctx is done, then waits for the runs it started (they are
// canceled through the executor's own shutdown). Ticks are aligned to
// multiples of the tick interval (cron fires on whole minutes, so a tick
// lands right after each fire time instead of up to a tick later).
//
// Claiming runs on a goroutine of its own, woken by each tick, by each
// dispatched batch and by each finished run: runs start while the rest of
// a large fan-out is still being dispatched, and a claim made while runs
// finish takes every slot freed meanwhile (claims batch themselves, as a
// group commit does, with no fixed delay).
func (ds *Dispatcher) Run(ctx context.Context) error {
	defer ds.wg.Wait()
	claimer := make(chan struct{})
	go func() {
		defer close(claimer)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ds.wake:
			}
			if err := ds.claim(ctx); err != nil && ctx.Err() == nil {
				ds.log.Error("claiming queued runs failed", "err", err.Error())
			}
		}
	}()
	defer func() { <-claimer }()
	for {
		if err := ds.dispatch(ctx, ds.poke); err != nil && ctx.Err() == nil {
			ds.log.Error("scheduler tick failed", "err", err.Error())
		}
		ds.poke()
		ds.sample(ctx)
		now := time.Now()
		t := time.NewTimer(time.Until(now.Truncate(ds.cfg.Tick).Add(ds.cfg.Tick).Add(5 * time.Millisecond)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// poke wakes the claimer (Run).
func (ds *Dispatcher) poke() {
	select {
	case ds.wake <- struct{}{}:
	default:
	}
}

// Tick dispatches due schedules and claims queued runs once, claiming
// after each batch (Run claims on its own goroutine instead).
func (ds *Dispatcher) Tick(ctx context.Context) error {
	defer ds.sample(ctx)
	if err := ds.dispatch(ctx, func() {
		if err := ds.claim(ctx); err != nil && ctx.Err() == nil {
			ds.log.Error("claiming queued runs failed", "err", err.Error())
		}
	}); err != nil {
		return err
	}
	return ds.claim(ctx)
}

// dispatch dispatches due schedules in batches of cfg.Batch until none is
// left (each batch its own transaction), so thousands due at once are not
// spread over thousands/Batch ticks; after each batch it calls batchDone
// (to claim, so runs start while the rest is dispatched).
func (ds *Dispatcher) dispatch(ctx context.Context, batchDone func()) error {
	for {
		b, err := ds.dispatchBatch(ctx)
		if err != nil {
			return err
		}
		if b.due > 0 {
			batchDone()
		}
		if !b.more(ds.cfg.Batch) || ctx.Err() != nil {
			return nil
		}
	}
}

// sample sets the queue-depth and running gauges.
func (ds *Dispatcher) sample(ctx context.Context) {
	if ds.metrics == nil {
		return
	}
	sctx := tenant.System(ctx)
	if n, err := ds.d.Client.ExportRun.Query().Where(exportrun.StateEQ(exportrun.StateQUEUED)).Count(sctx); err == nil {
		ds.metrics.SetQueueDepth(n)
	}
	ds.mu.Lock()
	running := ds.running
	ds.mu.Unlock()
	ds.metrics.SetRunning(running)
}

// forUpdate locks selected rows on PostgreSQL, skipping rows another
// replica holds; SQLite serialises writers and needs nothing.
func (ds *Dispatcher) forUpdate(s *sql.Selector) {
	if ds.d.Dialect == dialect.Postgres {
		s.ForUpdate(sql.WithLockAction(sql.SkipLocked))
	}
}

// batch is what one dispatch transaction did.
type batch struct{ due, advanced int }

// more: the batch was full and made progress, so more schedules may be due.
func (b batch) more(limit int) bool { return b.due >= limit && b.advanced > 0 }

// dispatchBatch handles up to cfg.Batch due schedules in one transaction
// of a few statements whatever the batch size: the select, one multi-row
// INSERT ... ON CONFLICT DO NOTHING of their runs, and one UPDATE of
// next_run_time per distinct next time (schedules due together mostly share
// their next time). It was two statements per schedule: 10,000 due at once
// cost 20,000 round trips before the last run could be claimed.
func (ds *Dispatcher) dispatchBatch(ctx context.Context) (batch, error) {
	sctx := tenant.System(ctx)
	now := ds.now().UTC()
	tx, err := ds.d.Client.Tx(sctx)
	if err != nil {
		return batch{}, err
	}
	defer func() { _ = tx.Rollback() }()
	due, err := tx.Schedule.Query().
		Where(schedule.StateEQ(schedule.StateACTIVE), schedule.NextRunTimeNotNil(), schedule.NextRunTimeLTE(now)).
		Order(ent.Asc(schedule.FieldNextRunTime)).Limit(ds.cfg.Batch).
		Modify(ds.forUpdate).All(sctx)
	if err != nil {
		return batch{}, fmt.Errorf("select due schedules: %w", err)
	}
	var (
		runs []*ent.ExportRunCreate
		next = map[time.Time][]string{} // next run time (zero: none) -> schedules
		// Schedules due together mostly share their cron, zone and fire
		// time, hence their decision: computing it (several Next/Prev
		// searches, ~35 µs for a yearly cron) once per distinct key instead
		// of once per schedule.
		decided = map[decideKey]decided{}
	)
	for _, sc := range due {
		k := decideKey{sc.Cron, sc.TimeZone, sc.NextRunTime.UTC(), string(sc.CatchUp)}
		d, ok := decided[k]
		if !ok {
			d.dec, d.err = decide(k, now)
			decided[k] = d
		}
		dec, err := d.dec, d.err
		if err != nil {
			// Only a database edited by hand gets here (the API validates
			// crons). Left due, such schedules would be selected first by
			// every batch and starve the others; without a next run time
			// they wait until their cron is corrected (UpdateSchedule
			// recomputes it).
			ds.log.Error("schedule has an invalid cron; it will not run until the cron is corrected", "schedule_id", sc.ID, "err", err.Error())
			next[time.Time{}] = append(next[time.Time{}], sc.ID)
			continue
		}
		if dec.Run {
			runs = append(runs, tx.ExportRun.Create().SetOrgID(sc.OrgID).SetScheduleID(sc.ID).SetTrigger(exportrun.TriggerSCHEDULED).
				SetPeriodStart(dec.PeriodStart).SetPeriodEnd(dec.PeriodEnd).SetDedupKey(dec.PeriodEnd.UTC().Format(time.RFC3339)))
			if dec.Missed > 0 {
				ds.log.Warn("schedule missed periods; one run covers them", "schedule_id", sc.ID, "missed", dec.Missed,
					"period_start", dec.PeriodStart, "period_end", dec.PeriodEnd)
			}
		} else {
			ds.log.Warn("schedule missed periods; skipped (catch_up NONE)", "schedule_id", sc.ID, "missed", dec.Missed)
		}
		next[dec.Next.UTC()] = append(next[dec.Next.UTC()], sc.ID)
	}
	// A run another dispatcher made for the same period already (the unique
	// (schedule_id, dedup_key) index) is skipped by ON CONFLICT DO NOTHING.
	for len(runs) > 0 {
		k := min(len(runs), insertChunk)
		if err := tx.ExportRun.CreateBulk(runs[:k]...).
			OnConflictColumns(exportrun.FieldScheduleID, exportrun.FieldDedupKey).DoNothing().Exec(sctx); err != nil {
			return batch{}, fmt.Errorf("create runs: %w", err)
		}
		runs = runs[k:]
	}
	advanced := 0
	for t, ids := range next {
		upd := tx.Schedule.Update().Where(schedule.IDIn(ids...))
		if t.IsZero() {
			upd.ClearNextRunTime()
		} else {
			upd.SetNextRunTime(t)
		}
		n, err := upd.Save(revision.Bookkeeping(sctx))
		if err != nil {
			return batch{}, fmt.Errorf("advance %d schedules: %w", len(ids), err)
		}
		advanced += n
	}
	if err := tx.Commit(); err != nil {
		return batch{}, err
	}
	return batch{due: len(due), advanced: advanced}, nil
}

// decideKey is what a dispatch decision depends on besides now.
type decideKey struct {
	cron, zone string
	nextRun    time.Time
	catchUp    string
}

type decided struct {
	dec cron.Decision
	err error
}

func decide(k decideKey, now time.Time) (cron.Decision, error) {
	c, err := cron.Parse(k.cron, k.zone)
	if err != nil {
		return cron.Decision{}, err
	}
	return c.Decide(cron.Due{NextRun: k.nextRun, CatchUp: k.catchUp}, now), nil
}

// insertChunk bounds the rows of one INSERT: ~12 parameters a row stays
// far below SQLite's 32,766 and PostgreSQL's 65,535 bind parameters.
const insertChunk = 500

// claim takes QUEUED scheduled runs up to the free slots and executes them.
func (ds *Dispatcher) claim(ctx context.Context) error {
	ds.claimMu.Lock()
	defer ds.claimMu.Unlock()
	ds.mu.Lock()
	free := ds.cfg.Slots - ds.running
	ds.mu.Unlock()
	if free <= 0 {
		return nil
	}
	sctx := tenant.System(ctx)
	if ds.d.Dialect == dialect.Postgres {
		// Not canceled by a shutdown between the claim's commit and the
		// read of its rows: claimed runs are handed to the executor, which
		// releases them at once when draining (export.Runner.Execute).
		cctx, cancel := context.WithTimeout(context.WithoutCancel(sctx), claimTimeout)
		defer cancel()
		claimed, err := ds.claimPG(cctx, free)
		if err != nil || len(claimed) == 0 {
			return err
		}
		// The claimed rows, read with one query (not one per run).
		runs, err := ds.d.Client.ExportRun.Query().Where(exportrun.IDIn(claimed...)).
			Order(ent.Asc(exportrun.FieldCreateTime)).All(cctx)
		if err != nil {
			ds.release(cctx, claimed)
			return fmt.Errorf("read %d claimed runs: %w", len(claimed), err)
		}
		ds.start(ctx, runs)
		return nil
	}
	tx, err := ds.d.Client.Tx(sctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	runs, err := tx.ExportRun.Query().
		Where(exportrun.StateEQ(exportrun.StateQUEUED), exportrun.Runner("")).
		Order(ent.Asc(exportrun.FieldCreateTime)).Limit(free).
		Modify(ds.forUpdate).All(sctx)
	if err != nil || len(runs) == 0 {
		return err
	}
	// The heartbeat is wall-clock time, not the scheduler's clock: the
	// runner's rescue (RecoverOrphans) compares it with time.Now, so with
	// --dev-clock-scale a scheduler-clock heartbeat lay in the future and a
	// run claimed by a process that died before loading it was never
	// rescued (left QUEUED with a dead runner forever).
	now := time.Now().UTC()
	claimed := make([]string, len(runs))
	for i, r := range runs {
		claimed[i] = r.ID
	}
	// One UPDATE for the batch: the rows are ours (locked on PostgreSQL,
	// the single writer on SQLite) until commit.
	if n, err := tx.ExportRun.Update().Where(exportrun.IDIn(claimed...)).
		SetRunner(ds.cfg.RunnerID).SetHeartbeatTime(now).Save(sctx); err != nil {
		return err
	} else if n != len(claimed) {
		return fmt.Errorf("claimed %d of %d queued runs", n, len(claimed))
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	for _, r := range runs { // as the UPDATE above left them
		r.Runner, r.HeartbeatTime = ds.cfg.RunnerID, &now
	}
	ds.start(ctx, runs)
	return nil
}

// claimPG claims up to n queued runs with one statement (its own
// transaction: one round trip), oldest first, skipping rows another
// replica is claiming.
func (ds *Dispatcher) claimPG(ctx context.Context, n int) ([]string, error) {
	now := time.Now().UTC() // wall clock: see claim
	rows, err := ds.d.Client.QueryContext(ctx, `WITH c AS (SELECT "id" FROM "export_runs" WHERE "state" = 'QUEUED' AND "runner" = ''
ORDER BY "create_time" LIMIT $1 FOR UPDATE SKIP LOCKED)
UPDATE "export_runs" SET "runner" = $2, "heartbeat_time" = $3, "update_time" = $3 FROM c WHERE "export_runs"."id" = c."id"
RETURNING "export_runs"."id"`, n, ds.cfg.RunnerID, now)
	if err != nil {
		return nil, fmt.Errorf("claim queued runs: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// claimTimeout bounds a claim on PostgreSQL (detached from shutdown).
const claimTimeout = 30 * time.Second

// release gives runs this process claimed but could not start back to
// the queue, for any replica to claim now (not after the orphan sweep,
// which would count an attempt). A failure is logged: the sweep remains.
func (ds *Dispatcher) release(ctx context.Context, ids []string) {
	_, err := ds.d.Client.ExecContext(ctx, `UPDATE "export_runs" SET "runner" = '', "heartbeat_time" = NULL
WHERE "id" = ANY($1) AND "runner" = $2 AND "state" = 'QUEUED'`, ids, ds.cfg.RunnerID)
	if err != nil {
		ds.log.Error("releasing claimed runs failed; the orphan sweep will requeue them", "runs", len(ids), "err", err.Error())
	}
}

// start executes claimed runs, each on a goroutine of its own holding a
// slot.
func (ds *Dispatcher) start(ctx context.Context, runs []*ent.ExportRun) {
	for _, r := range runs {
		ds.mu.Lock()
		ds.running++
		ds.mu.Unlock()
		ds.wg.Add(1)
		go func() {
			defer ds.wg.Done()
			defer func() {
				ds.mu.Lock()
				ds.running--
				ds.mu.Unlock()
				ds.poke()
			}()
			ds.exec.Execute(ctx, r)
		}()
	}
}

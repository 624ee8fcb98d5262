package export

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"entgo.io/ent/dialect"
	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/auditexport/auditexport/clients/go/manifest"
	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/element"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/cron"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/ids"
	"github.com/auditexport/auditexport/internal/leftover"
	"github.com/auditexport/auditexport/internal/metrics"
	"github.com/auditexport/auditexport/internal/notify"
	"github.com/auditexport/auditexport/internal/ownership"
	"github.com/auditexport/auditexport/internal/secrets"
	"github.com/auditexport/auditexport/internal/signing"
	"github.com/auditexport/auditexport/internal/tenant"
)

// RunError is why a run failed.
type RunError struct {
	Code            string // e.g. PROVIDER_ACCESS_DENIED, PROVIDER_UNAVAILABLE, QUERY_FAILED
	Message         string // ours
	ProviderMessage string // the provider's own code and message, redacted and bounded by destination
	// retry: the run's attempts may retry it (the database was unreachable).
	retry bool
}

// redacted is e with every text passed through destination.Redact and
// bounded: the run history, the progress stream, audit events and e-mail
// are built from it, so a caller that built a RunError from raw error text
// still cannot store or send credential material.
func (e *RunError) redacted() *RunError {
	if e == nil {
		return nil
	}
	return &RunError{Code: e.Code, Message: destination.Redact(e.Message),
		ProviderMessage: destination.Message(errors.New(e.ProviderMessage))}
}

func (e *RunError) Error() string {
	if e.ProviderMessage != "" {
		return e.Message + ": " + e.ProviderMessage
	}
	return e.Message
}

// Config tunes the runner.
type Config struct {
	AllowPrivateEndpoints bool
	// StallTimeout and GCSChunkRetryDeadline: see destination.OpenOptions.
	StallTimeout, GCSChunkRetryDeadline time.Duration
	// UploadConcurrency: see destination.OpenOptions.
	UploadConcurrency int
	// Local says where each organization's LOCAL destinations may lie.
	Local destination.LocalDirs
	// RunnerID names this process in ExportRun.runner (default ids.Process()).
	RunnerID string
	// MaxManualRunsPerOrg and MaxManualRuns bound queued + running Send now
	// runs of one organization (all replicas) and of this process (0: none).
	MaxManualRunsPerOrg, MaxManualRuns int
	// NotifyAllowedDomains: failure mail goes to the organization's users
	// and to addresses in these domains only.
	NotifyAllowedDomains []string
	// MaxAttempts per run for transient provider errors (default 4).
	MaxAttempts int
	// RetryInitial is the first backoff interval (default 1s).
	RetryInitial time.Duration
	// ProgressEvery is how often progress is published (default 250ms); it is
	// persisted for other replicas at most every second.
	ProgressEvery time.Duration
}

// Runner executes export runs: Send now today, scheduled runs later, on one
// code path. Runs are detached from the request that started them.
type Runner struct {
	d    *db.DB
	keys *secrets.Keyring
	// notifier mails a schedule's people (failure, auto-pause).
	notifier *notify.Notifier
	rec      *auditlog.Recorder
	log      *slog.Logger
	cfg      Config
	broker   *broker
	remote   *remoteHub // watchers of runs executed elsewhere
	now      func() time.Time

	base     context.Context
	stop     context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	cancels  map[string]context.CancelCauseFunc
	draining bool
	// manualMu serialises this process's count-then-insert of Send now
	// runs (see createRun).
	manualMu sync.Mutex
	// slotMu guards the process's Send now slots: manualActive taken,
	// manualRuns the runs holding one (see reserveManual).
	slotMu       sync.Mutex
	manualActive int
	manualRuns   map[string]struct{}
	metrics      *metrics.Metrics
	// signing signs each export's manifest (nil: no manifests).
	signing *signing.Keys

	// bg: background aborts of finished runs' uploads (see abortLater);
	// they end when base does.
	bg sync.WaitGroup
}

// WithMetrics records finished runs and schedule lateness in m (nil: none).
func (r *Runner) WithMetrics(m *metrics.Metrics) *Runner {
	r.metrics = m
	return r
}

// NewRunner builds a runner; Close stops it.
func NewRunner(d *db.DB, keys *secrets.Keyring, mail *notify.Mailer, rec *auditlog.Recorder, log *slog.Logger, cfg Config) *Runner {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 4
	}
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = time.Second
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 250 * time.Millisecond
	}
	if cfg.RunnerID == "" {
		// Send-now runs are created claimed by this process; an empty
		// runner would let a dispatcher claim them too and never rescue them.
		cfg.RunnerID = ids.Process()
	}
	base, stop := context.WithCancel(context.Background())
	r := &Runner{d: d, keys: keys, notifier: notify.NewNotifier(d.Client, mail, cfg.NotifyAllowedDomains, log), rec: rec, log: log, cfg: cfg, broker: newBroker(),
		now: time.Now, base: base, stop: stop, cancels: map[string]context.CancelCauseFunc{}, manualRuns: map[string]struct{}{}}
	r.remote = newRemoteHub(r)
	if keys != nil {
		r.signing = signing.New(d.Client, keys)
	}
	return r
}

// errShutdown cancels runs when the server stops.
var errShutdown = errors.New("server shutting down")

// errCanceled cancels a run on CancelExportRun.
var errCanceled = errors.New("canceled by request")

// Close stops taking runs, lets running exports finish until ctx is done
// (the shutdown grace period), then cancels the rest — their uploads are
// aborted; scheduled runs go back to the queue for a retry, Send now runs
// end FAILED (INTERRUPTED) — and waits briefly for that bookkeeping.
func (r *Runner) Close(ctx context.Context) {
	defer r.bg.Wait() // after r.stop(), which ends them
	r.mu.Lock()
	r.draining = true
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		r.stop()
		return
	case <-ctx.Done():
	}
	r.mu.Lock()
	for _, c := range r.cancels {
		c(errShutdown)
	}
	r.mu.Unlock()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		r.log.Error("export runs did not stop within 15s of cancellation")
	}
	r.stop()
}

// Start creates a QUEUED run of the schedule and executes it in the
// background (the run's load reads the schedule, element and integration,
// once). ctx must carry the schedule's organization. It returns the run and
// its first progress report (QUEUED), the one watchers see first.
func (r *Runner) Start(ctx context.Context, scheduleID, trigger, requestedBy string) (*ent.ExportRun, Progress, error) {
	r.mu.Lock()
	draining := r.draining
	r.mu.Unlock()
	if draining {
		return nil, Progress{}, errShutdown
	}
	run, slot, err := r.createRun(ctx, scheduleID, trigger, requestedBy)
	var limit *ManualRunLimitError
	if errors.As(err, &limit) {
		return nil, Progress{}, err
	}
	if err != nil {
		return nil, Progress{}, fmt.Errorf("create run: %w", err)
	}
	if slot {
		r.holdManual(run.ID)
	}
	org, _ := tenant.Org(ctx)
	rctx, first, end, ok := r.begin(org, run.ID)
	if !ok {
		// Close began between the check above and now: the run exists,
		// so it ends like a Send now interrupted by a shutdown.
		r.finish(context.WithoutCancel(ctx), &job{}, run.ID, exportrun.StateFAILED, Stats{},
			&RunError{Code: "INTERRUPTED", Message: "the server shut down before the run started"})
		return nil, Progress{}, errShutdown
	}
	go func() {
		defer end()
		defer r.releaseManual(run.ID) // finish did, unless it never ran
		r.execute(rctx, run.ID, run)
	}()
	return run, first, nil
}

// begin registers a run this process is about to execute — its cancel
// func (CancelExportRun, shutdown) and its progress feed, opened with the
// QUEUED report — under the lock Close sets draining with, so no run
// starts once Close has begun waiting. Send now and scheduled runs share
// it. end must be called when the run is over.
func (r *Runner) begin(orgID, runID string) (ctx context.Context, first Progress, end func(), ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining {
		return nil, Progress{}, nil, false
	}
	rctx, cancel := context.WithCancelCause(tenant.WithOrg(r.base, orgID))
	r.cancels[runID] = cancel
	r.wg.Add(1)
	first = Progress{RunID: runID, Phase: PhaseQueued, Time: r.now().UTC()}
	r.broker.open(first)
	return rctx, first, func() {
		r.mu.Lock()
		delete(r.cancels, runID)
		r.mu.Unlock()
		cancel(nil)
		r.wg.Done()
	}, true
}

// job is everything a run needs, loaded once.
type job struct {
	run   *ent.ExportRun
	sc    *ent.Schedule
	el    *ent.Element
	integ *ent.StorageIntegration
	zone  *time.Location
	plan  Plan
	key   string
	// uri is the object's URI: the rendered one, or the distinct one a
	// Send now writes to when that is taken (read by reportLoop).
	uri  atomic.Pointer[string]
	note string // ExportRun.note (see deliver)
	// tried: an upload to key was attempted (it may have committed);
	// renamed: a Send now moved to its distinct key.
	tried, renamed bool
	counters       Counters
	// phase and total are written by the run and read by reportLoop's
	// goroutine, hence atomic.
	phase atomic.Value // string
	total atomic.Int64
	// bucketName and unaborted: S3 multipart uploads of failed attempts
	// that could not be aborted yet (see abortUploads).
	bucketName string
	unaborted  []pendingAbort
	// made: the objects this run's attempts stored or may have stored
	// (its object, its manifest), with their size and the earliest upload
	// start; if the run ends FAILED or CANCELED before its manifest's link
	// was appended to the chain, they are removed (see madeOrMayHave and
	// RemoveUnconfirmed).
	made []pendingAbort
	// linked: the manifest whose link writeManifest appended to the
	// schedule's chain (or found recorded) for the stored object. From
	// then on the object stays whatever the outcome, and the manifest
	// must reach the store, or the chain has a gap (see run).
	linked []byte
	// started is when execute began (the run's start_time, see load).
	started time.Time
	// row is the run's row as the caller of execute had it (nil: read
	// it); the first load takes it.
	row *ent.ExportRun
}

// execute runs runID; row, if not nil, is its row as just read or
// written (the dispatcher's claim, Send now's insert), which the first load
// uses instead of reading it again.
func (r *Runner) execute(ctx context.Context, runID string, row *ent.ExportRun) {
	dbctx := context.WithoutCancel(ctx) // bookkeeping must happen even when the run is canceled
	j := &job{started: r.now(), row: row}
	j.phase.Store(PhaseQuerying)
	var skipped bool
	var stats Stats
	err := catch(func() error {
		if err := r.loadRetrying(dbctx, runID, j); err != nil {
			return err
		}
		stop := r.reportLoop(ctx, dbctx, j)
		defer stop()
		var err error
		stats, err = r.run(ctx, j, &skipped)
		return err
	})
	out := classify(err, context.Cause(ctx), skipped, j.run)
	if out.internal {
		var pe *PanicError
		if errors.As(err, &pe) {
			r.log.Error("export run panicked", "run_id", runID, "err", pe.Error(), "stack", string(pe.Stack))
		} else {
			r.log.Error("export run failed", "run_id", runID, "err", destination.Message(err))
		}
	}
	if out.requeue {
		r.requeue(dbctx, runID, out.attempt)
		return
	}
	r.finish(dbctx, j, runID, out.state, stats, out.err)
}

// outcome is how a run ended: recorded as state with err, or handed back
// to the queue (requeue) with attempt as its attempts so far.
type outcome struct {
	state    exportrun.State
	err      *RunError
	requeue  bool
	attempt  int
	internal bool // err is ours, not a RunError: log the cause
}

// classify decides a run's outcome, in this one place, from what delivering
// it returned (err), why its context ended (cause: errCanceled, errShutdown
// or nil), whether its send condition skipped it, and the run as loaded
// (nil if loading failed). It has no side effects.
func classify(err, cause error, skipped bool, run *ent.ExportRun) outcome {
	var rerr *RunError
	scheduled := run != nil && run.Trigger == exportrun.TriggerSCHEDULED
	switch {
	case skipped:
		return outcome{state: exportrun.StateSKIPPED}
	case err == nil:
		return outcome{state: exportrun.StateSUCCEEDED}
	case errors.Is(cause, errCanceled):
		return outcome{state: exportrun.StateCANCELED, err: &RunError{Code: "CANCELED", Message: "the run was canceled"}}
	case errors.As(err, &rerr) && rerr.Code == "SCHEDULE_PAUSED":
		return outcome{state: exportrun.StateCANCELED, err: rerr}
	case errors.Is(err, errRunInProgress) && scheduled:
		// Not a failure: wait for the other run and try again (this
		// attempt does not count).
		return outcome{requeue: true, attempt: run.Attempt - 1}
	case errors.Is(cause, errShutdown) && scheduled && run.Attempt < maxScheduledAttempts:
		// Graceful shutdown: the upload was aborted; hand the run back to the
		// queue so a live replica (or this one after restart) retries it.
		return outcome{requeue: true, attempt: run.Attempt}
	case errors.Is(cause, errShutdown):
		return outcome{state: exportrun.StateFAILED, err: &RunError{Code: "INTERRUPTED", Message: "the server shut down during the run; the upload was aborted"}}
	case errors.As(err, &rerr):
		return outcome{state: exportrun.StateFAILED, err: rerr}
	}
	return outcome{state: exportrun.StateFAILED, err: &RunError{Code: "INTERNAL", Message: "export failed"}, internal: true}
}

// loadRetrying is load, retried while the database is unreachable (for
// outcomeRetryFor, backoff 250 ms to 2 s, as recording an outcome is): a
// connection reset as a run started failed it at once — INTERNAL, or a
// misleading SCHEDULE_NOT_FOUND — and a scheduled period was lost to a
// moment's outage. Every step of load may run again (its writes are
// conditional or idempotent).
func (r *Runner) loadRetrying(ctx context.Context, runID string, j *job) error {
	err := r.load(ctx, runID, j)
	for wait, deadline := 250*time.Millisecond, time.Now().Add(outcomeRetryFor); err != nil && dbUnreachable(err) && ctx.Err() == nil && time.Now().Before(deadline); wait = min(2*wait, 2*time.Second) {
		r.log.Warn("database unreachable while starting a run; retrying", "run_id", runID, "err", err.Error())
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		err = r.load(ctx, runID, j)
	}
	return err
}

// load reads the run, its schedule, element and integration, and plans it.
// Only a row that is really gone becomes a *RunError; a failed read is
// returned as it is (see loadRetrying).
func (r *Runner) load(ctx context.Context, runID string, j *job) error {
	c := r.d.Client
	var err error
	if j.run, j.row = j.row, nil; j.run == nil || j.run.ID != runID {
		if j.run, err = c.ExportRun.Get(ctx, runID); err != nil {
			return fmt.Errorf("load run: %w", err)
		}
	}
	if j.sc, err = c.Schedule.Get(ctx, j.run.ScheduleID); ent.IsNotFound(err) {
		return &RunError{Code: "SCHEDULE_NOT_FOUND", Message: "the schedule no longer exists"}
	} else if err != nil {
		return fmt.Errorf("load schedule: %w", err)
	}
	// Runs act with the owner's authority, which may have been lost since
	// the schedule was made or this run was queued (finish pauses it).
	var denied *ownership.Error
	if err := ownership.Check(ctx, c, j.sc.OwnerID); errors.As(err, &denied) {
		return &RunError{Code: ownership.Code, Message: denied.Error()}
	} else if err != nil {
		return err
	}
	if j.el, err = c.Element.Query().Where(element.ID(j.sc.ElementID)).Only(ctx); ent.IsNotFound(err) {
		return &RunError{Code: "ELEMENT_NOT_FOUND", Message: "the schedule's workbook element no longer exists"}
	} else if err != nil {
		return fmt.Errorf("load element: %w", err)
	}
	if j.run.Trigger == exportrun.TriggerSCHEDULED && j.sc.State == schedule.StatePAUSED && j.sc.PauseReason != nil &&
		(*j.sc.PauseReason == schedule.PauseReasonINTEGRATION_UPDATED || *j.sc.PauseReason == schedule.PauseReasonINTEGRATION_DELETED) {
		// The integration changed after this run was queued: that pause
		// exists so that nothing is written with the changed (or deleted)
		// integration before its owner has looked. A user's pause, or one
		// after repeated failures, takes effect from the next period: runs
		// already due still deliver their periods.
		return &RunError{Code: "SCHEDULE_PAUSED", Message: "the schedule was paused (" + j.sc.PauseReason.String() + ") before this scheduled run started"}
	}
	if j.sc.IntegrationID == "" {
		return &RunError{Code: "INTEGRATION_DELETED", Message: "the schedule's storage integration was deleted"}
	}
	if j.integ, err = c.StorageIntegration.Get(ctx, j.sc.IntegrationID); ent.IsNotFound(err) {
		return &RunError{Code: "INTEGRATION_NOT_FOUND", Message: "the schedule's storage integration no longer exists"}
	} else if err != nil {
		return fmt.Errorf("load integration: %w", err)
	}
	if j.zone, err = time.LoadLocation(j.sc.TimeZone); err != nil {
		return fmt.Errorf("zone %q: %w", j.sc.TimeZone, err)
	}
	now := r.now().UTC()
	scheduled := j.run.Trigger == exportrun.TriggerSCHEDULED
	// A retried run (attempt > 1) reuses the window it chose first, so every
	// attempt of a period writes the same rows to the same key.
	if j.sc.Mode == schedule.ModeINCREMENTAL {
		if err := r.claimIncremental(ctx, j, now); err != nil {
			return err
		}
	}
	from, to := j.run.FromSeq, j.run.ToSeq
	if to == 0 {
		if to, err = auditlog.StableSeq(ctx, r.d); err != nil {
			return fmt.Errorf("read insert sequence: %w", err)
		}
		from = 0
		if j.sc.Mode == schedule.ModeINCREMENTAL {
			from = j.sc.Watermark
		}
	}
	periodEnd := now
	periodStart := now
	if cr, err := cron.Parse(j.sc.Cron, j.sc.TimeZone); err == nil {
		if p := cr.Prev(now); !p.IsZero() {
			periodStart = p
		}
	}
	if j.run.PeriodStart != nil {
		periodStart, periodEnd = *j.run.PeriodStart, *j.run.PeriodEnd
	}
	// A scheduled run stands for its period: the relative time range ends
	// and the URI's time tokens are rendered at the period's end, so the
	// object key is the same on every attempt (at-least-once execution,
	// exactly one object per period).
	asOf := now
	if scheduled {
		asOf = periodEnd
	}
	j.plan = Plan{Spec: j.el.Spec, Now: asOf, Format: string(j.sc.Format), Compression: string(j.sc.Compression),
		EscapeFormulas: j.sc.CsvEscapeFormulas, SeqFrom: from, SeqTo: to, MD5: destination.Provider(j.integ.Provider) == destination.GCS}
	uri, err := destination.Render(j.sc.URI, destination.Vars{Time: asOf, PeriodStart: periodStart, PeriodEnd: periodEnd,
		RunID: j.run.ID, ScheduleID: j.sc.ID, Zone: j.zone})
	if err != nil {
		return &RunError{Code: "BAD_URI", Message: "rendering the destination URI: " + err.Error()}
	}
	if j.sc.PrefixFileNameWithDatetime {
		uri = destination.PrefixFileName(uri, asOf, j.zone)
	}
	j.uri.Store(&uri)
	// Group-committed with the starts (and ends) of other runs, a statement
	// per batch of starts (db.Runs; see finish).
	if err := r.d.Runs.Start(ctx, db.RunStart{RunID: runID, Phase: PhaseQuerying, Time: now, ObjectURI: uri,
		FromSeq: from, ToSeq: to, PeriodStart: periodStart, PeriodEnd: periodEnd}); err != nil {
		return err
	}
	// Lateness of the scheduler: how long after its period ended a
	// scheduled run began executing (its first attempt only: retries wait
	// on purpose).
	if scheduled && j.run.PeriodEnd != nil && j.run.Attempt <= 1 {
		r.metrics.ObserveLateness(now.Sub(*j.run.PeriodEnd))
	}
	return nil
}

// errRunInProgress: an incremental schedule runs one export at a time.
var errRunInProgress = &RunError{Code: "RUN_IN_PROGRESS", Message: "another run of this incremental schedule is in progress; incremental runs of one schedule never overlap"}

// claimIncremental marks the run RUNNING only if no other run of the same
// incremental schedule is running, and reloads the schedule (its watermark)
// under that guard: two overlapping runs would read the same watermark and
// export the same rows twice. The schedule row is locked on PostgreSQL;
// SQLite transactions are already exclusive (_txlock=immediate).
func (r *Runner) claimIncremental(ctx context.Context, j *job, now time.Time) error {
	tx, err := r.d.Client.Tx(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	q := tx.Schedule.Query().Where(schedule.ID(j.sc.ID))
	if r.d.Dialect == dialect.Postgres {
		q = q.ForUpdate()
	}
	sc, err := q.Only(ctx)
	if err != nil {
		return fmt.Errorf("lock schedule: %w", err)
	}
	busy, err := tx.ExportRun.Query().Where(exportrun.ScheduleID(sc.ID), exportrun.StateEQ(exportrun.StateRUNNING),
		exportrun.IDNEQ(j.run.ID)).Count(ctx)
	if err != nil {
		return err
	}
	if busy > 0 {
		return errRunInProgress
	}
	if err := tx.ExportRun.UpdateOneID(j.run.ID).SetState(exportrun.StateRUNNING).SetStartTime(now).SetHeartbeatTime(now).Exec(ctx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	j.sc = sc
	return nil
}

// run queries, encodes and uploads, retrying transient provider errors.
func (r *Runner) run(ctx context.Context, j *job, skipped *bool) (_ Stats, err error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = r.cfg.RetryInitial
	count, err := backoff.Retry(ctx, func() (*auditlog.Result, error) {
		c, err := auditlog.QuerySeq(ctx, r.d.Client, j.plan.Spec, j.plan.Now, j.plan.SeqFrom, j.plan.SeqTo, 0, 0)
		if err == nil {
			return c, nil
		}
		var rerr *RunError
		if err = r.queryError(ctx, err); errors.As(err, &rerr) && rerr.retry {
			r.log.Warn("database unreachable while counting a run's rows; retrying", "run_id", j.run.ID)
			return c, err
		}
		return c, backoff.Permanent(err)
	}, backoff.WithBackOff(b), backoff.WithMaxTries(uint(r.cfg.MaxAttempts)), backoff.WithMaxElapsedTime(0))
	if err != nil {
		return Stats{}, err
	}
	j.total.Store(count.Total)
	switch j.sc.SendCondition {
	case schedule.SendConditionIF_DATA:
		*skipped = count.Total == 0
	case schedule.SendConditionIF_NO_DATA:
		*skipped = count.Total > 0
	}
	if *skipped {
		return Stats{}, nil
	}
	bucket, base, err := r.openBucket(ctx, j.integ)
	var rerr *RunError
	if errors.As(err, &rerr) {
		return Stats{}, rerr
	}
	if err != nil {
		return Stats{}, &RunError{Code: "DESTINATION_UNAVAILABLE", Message: "opening the destination failed", ProviderMessage: destination.Message(err)}
	}
	defer bucket.Close()
	if j.key, err = destination.Key(base, j.objectURI()); err != nil {
		return Stats{}, &RunError{Code: "BAD_URI", Message: "the destination URI is not under the integration: " + err.Error()}
	}
	j.bucketName = base.Bucket
	defer func() {
		var re *RunError
		switch {
		case err == nil, errors.As(err, &re) && re.Code == ManifestExistsCode:
			// MANIFEST_EXISTS says the object was stored (and linked):
			// it stays.
		case j.linked != nil:
			// The object was stored and confirmed, and its manifest's
			// link appended to the schedule's chain; then the manifest
			// upload failed (or the run was canceled). Removing the
			// object would leave a gap in the chain an auditor
			// verifies, so it stays, and the manifest is uploaded now
			// or once the store answers again.
			j.unaborted = append(j.unaborted, pendingAbort{key: j.key + manifest.Suffix, obj: &leftover.Object{Kind: leftover.UploadManifest, Bucket: j.bucketName,
				Key: j.key + manifest.Suffix, URI: j.objectURI() + manifest.Suffix, Size: int64(len(j.linked))}, data: j.linked})
			err = manifestPending(err)
		default:
			// The run failed (or was canceled) after an attempt stored
			// its object, or may have (the store committed without the
			// answer reaching us), or without making its manifest
			// (MANIFEST_FAILED): that object would be an export without
			// a SUCCEEDED run, and without its manifest. Removed like a
			// multipart upload, now or once the store answers again.
			j.unaborted = append(j.unaborted, j.made...)
		}
		if err != nil && destination.StagesBlocks(bucket) {
			// Azure: the blocks a failed attempt staged stay uncommitted
			// (a later attempt's commit discards them, but none
			// succeeded): discard them like an S3 multipart upload.
			j.unaborted = append(j.unaborted, pendingAbort{key: j.key})
		}
		// Whatever the outcome, retry aborts that failed earlier; what the
		// store still does not take is retried after the run.
		r.abortUploads(ctx, j, bucket)
		r.abortLater(j)
	}()
	attempt := 0
	op := func() (Stats, error) {
		attempt++
		if attempt > 1 {
			j.counters.Rows.Store(0)
			j.counters.Bytes.Store(0)
			_ = r.d.Client.ExportRun.UpdateOneID(j.run.ID).SetAttempt(attempt).Exec(context.WithoutCancel(ctx))
		}
		st, err := r.deliver(ctx, j, bucket)
		if err == nil {
			err = r.writeManifest(ctx, j, bucket, st)
		}
		if err == nil {
			return st, nil
		}
		if ctx.Err() != nil {
			return st, backoff.Permanent(err)
		}
		var qe *RunError
		if errors.As(err, &qe) && qe.retry {
			r.log.Warn("database unreachable during a run; retrying", "run_id", j.run.ID, "attempt", attempt)
			return st, qe
		}
		if errors.As(err, &qe) || errors.As(err, new(*PanicError)) {
			return st, backoff.Permanent(err)
		}
		pe, transient := destination.Describe(bucket, err)
		if !transient && (pe != nil && notFoundCode(pe.Code) || gcerrors.Code(err) == gcerrors.NotFound) {
			// A 404 while the bucket is there is the upload's own: a
			// lost resumable session (GCS), multipart upload (S3,
			// NoSuchUpload) or block list. Starting the upload again is
			// the fix, not "the bucket does not exist". (Seen against
			// fake-gcs-server after a chunk retried under load.)
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
			ok, aerr := bucket.IsAccessible(actx)
			cancel()
			transient = aerr == nil && ok
		}
		rerr := providerRunError(pe, err, transient)
		if !transient {
			return st, backoff.Permanent(rerr)
		}
		r.log.Warn("transient upload error; retrying", "run_id", j.run.ID, "attempt", attempt, "err", rerr.Error())
		return st, rerr
	}
	b.Reset()
	return backoff.Retry(ctx, op, backoff.WithBackOff(b), backoff.WithMaxTries(uint(r.cfg.MaxAttempts)), backoff.WithMaxElapsedTime(0))
}

// notFoundCode: a provider's "not found" error codes.
func notFoundCode(code string) bool {
	switch code {
	case "NoSuchBucket", "ContainerNotFound", "404", "notFound", "NoSuchUpload", "NotFound", "BlobNotFound":
		return true
	}
	return false
}

func providerRunError(pe *destination.ProviderError, err error, transient bool) *RunError {
	re := &RunError{Code: "PROVIDER_ERROR", Message: "the storage provider refused the upload"}
	if transient {
		re.Code, re.Message = "PROVIDER_UNAVAILABLE", "the storage provider could not be reached"
	}
	if pe != nil {
		re.ProviderMessage = pe.Code + ": " + pe.Message
		switch pe.Code {
		case "AccessDenied", "AuthenticationFailed", "AuthorizationFailure", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "401", "forbidden", "Forbidden":
			re.Code = "PROVIDER_ACCESS_DENIED"
		case "NoSuchBucket", "ContainerNotFound", "404", "notFound":
			if !transient {
				re.Code, re.Message = "PROVIDER_BUCKET_NOT_FOUND", "the bucket or container does not exist"
			}
		}
	} else {
		re.ProviderMessage = destination.Message(err)
	}
	return re
}

func (r *Runner) queryError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	var invalid *auditlog.InvalidSpecError
	if errors.As(err, &invalid) {
		// An element stored before a limit was added: the owner must fix it.
		return &RunError{Code: "ELEMENT_INVALID", Message: "the schedule's workbook element is no longer valid (" + invalid.Error() + "): change it, then run again"}
	}
	r.log.Error("export query failed", "err", err.Error())
	if dbUnreachable(err) {
		// A database restart or a network blip: retried by the run's
		// attempts like a provider's transient error, so a scheduled
		// period is not lost to a short outage.
		return &RunError{Code: "QUERY_FAILED", Message: "reading the audit log failed: the database was unreachable", retry: true}
	}
	return &RunError{Code: "QUERY_FAILED", Message: "reading the audit log failed"}
}

// dbUnreachable reports a failure to reach the database (connection
// refused, reset or closed) rather than an error of the query itself.
func dbUnreachable(err error) bool {
	var ne net.Error
	var ce *pgconn.ConnectError
	return errors.As(err, &ne) || errors.As(err, &ce) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(err.Error(), "conn closed")
}

// upload makes one attempt: the object becomes visible only when the upload
// completes; any error cancels the upload's context first, which aborts it
// (multipart abort, uncommitted blocks, temp file removed) so no partial
// object is left.
//
// The rows are piped into bucket.Upload rather than written to a
// blob.Writer: gocloud's azureblob writer (v0.47) nils its pipe reader from
// the upload goroutine when the upload fails and then dereferences it in
// Close, which crashed the server on any failed Azure upload (e.g. wrong
// credentials). The Upload path hands the reader to the driver and has no
// such pipe.
func (r *Runner) upload(ctx context.Context, j *job, bucket *blob.Bucket) (Stats, error) {
	uploadStart := time.Now() // the store's clock, not the scheduler's (a dev clock may run fast)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	uploaded := make(chan error, 1)
	go func() {
		err := catch(func() error {
			return bucket.Upload(wctx, j.key, pr, destination.UploadOptions(r.openOptions(), bucket, destination.Retain(
				&blob.WriterOptions{ContentType: contentType(j.plan), BufferSize: 8 << 20, IfNotExist: true}, lockOf(j.integ), r.now())))
		})
		if err != nil {
			pr.CloseWithError(err) // unblock the writer below
		} else {
			pr.Close()
		}
		uploaded <- err
	}()
	j.phase.Store(PhaseUploading)
	st, err := Write(wctx, r.d, j.plan, pw, &j.counters)
	if err != nil {
		// Cancel before the reader sees the error, so the upload aborts
		// instead of committing what it got so far.
		cancel()
		pw.CloseWithError(err)
		uerr := <-uploaded
		r.noteUnaborted(ctx, j, bucket, uerr)
		if errors.As(err, new(*PanicError)) {
			return st, err // the provider only saw our failure echoed
		}
		var qe *QueryError
		if ctx.Err() == nil && errors.As(err, &qe) {
			return st, r.queryError(ctx, err)
		}
		if uerr != nil && ctx.Err() == nil && !errors.Is(uerr, context.Canceled) {
			return st, uerr // the provider's own error, not the pipe's echo of it
		}
		return st, err
	}
	j.phase.Store(PhaseFinalizing)
	pw.Close()
	if err := <-uploaded; err != nil {
		r.noteUnaborted(ctx, j, bucket, err)
		if _, transient := destination.Describe(bucket, err); transient || ctx.Err() != nil || errors.Is(err, context.Canceled) {
			// Every byte was handed to the SDK, which may have asked
			// the store to commit: a refusal is an answer, but a
			// transient failure (a reset, a stall, a 5xx) or a cancel
			// leaves the outcome unknown.
			j.madeOrMayHave(j.key, j.objectURI(), st.Bytes, uploadStart)
		}
		return st, err
	}
	j.madeOrMayHave(j.key, j.objectURI(), st.Bytes, uploadStart)
	if err := r.checkStored(ctx, j, bucket, st); err != nil {
		return st, err
	}
	return st, nil
}

// checkStored compares the MD5 GCS reports for the object just stored with
// the MD5 of the bytes the run sent. A resumable upload that the client
// resumed after a connection reset inside a chunk was seen (against
// fake-gcs-server, TestStorageFaultFlap) to store an object that differs
// from what was sent, while the upload reported success. A mismatch
// deletes that object (this attempt made it: the create is conditional)
// and fails the attempt as a transient error, so the run sends it again.
// Other providers: S3's ETag is an MD5 only for unencrypted single-part
// uploads and Azure stores none for a block list, so nothing comparable
// comes back without another full read.
func (r *Runner) checkStored(ctx context.Context, j *job, bucket *blob.Bucket, st Stats) error {
	if destination.Provider(j.integ.Provider) != destination.GCS || len(st.MD5) == 0 {
		return nil
	}
	a, err := bucket.Attributes(ctx, j.key)
	if err != nil {
		return err
	}
	if len(a.MD5) == 0 || bytes.Equal(a.MD5, st.MD5) {
		return nil
	}
	r.log.Error("the stored object differs from what was sent; deleting it and sending it again", "run_id", j.run.ID, "key", j.key,
		"sent_md5", hex.EncodeToString(st.MD5), "stored_md5", hex.EncodeToString(a.MD5), "stored_size", a.Size, "sent_size", st.Bytes)
	if err := bucket.Delete(context.WithoutCancel(ctx), j.key); err != nil {
		return fmt.Errorf("the stored object's MD5 %x differs from the MD5 %x of the %d bytes sent (corrupted in transit), and deleting it failed: %w",
			a.MD5, st.MD5, st.Bytes, err)
	}
	return fmt.Errorf("the stored object's MD5 %x differs from the MD5 %x of the %d bytes sent (corrupted in transit); it was deleted", a.MD5, st.MD5, st.Bytes)
}

// noteUnaborted makes sure a failed S3 multipart upload is aborted. The SDK
// aborts it itself, but with the attempt's context: after a cancel (or
// shutdown) that context is already done, and when the store is unreachable
// the abort fails too; either way the parts would stay behind. The upload
// id it reports is aborted here with a fresh context, or remembered for
// abortUploads when the store does not answer.
func (r *Runner) noteUnaborted(ctx context.Context, j *job, bucket *blob.Bucket, err error) {
	id := destination.UploadID(err)
	if id == "" {
		return
	}
	j.unaborted = append(j.unaborted, pendingAbort{key: j.key, id: id})
	r.abortUploads(ctx, j, bucket)
}

// pendingAbort is a clean-up a run could not finish yet: a multipart
// upload (id) of key to abort — the key is kept with it, a Send now may
// move to another key after — or, with obj set, a leftover.Object: an
// object the run stored or may have stored, to be removed if it is there
// with its size and was written since (destination.RemoveUnconfirmed), or
// the run's manifest (data) to upload.
type pendingAbort struct {
	key, id string
	obj     *leftover.Object
	data    []byte
}

// madeOrMayHave notes that an upload of size bytes to key (uri), started at
// since, stored or may have stored an object (an earlier start is kept).
func (j *job) madeOrMayHave(key, uri string, size int64, since time.Time) {
	for _, u := range j.made {
		if u.obj.Key == key {
			u.obj.Size = size
			if since.Before(u.obj.Since) {
				u.obj.Since = since
			}
			return
		}
	}
	j.made = append(j.made, pendingAbort{key: key, obj: &leftover.Object{Kind: leftover.Remove, Bucket: j.bucketName, Key: key, URI: uri, Size: size, Since: since}})
}

// settle aborts u's multipart upload, removes u's unconfirmed object or
// uploads u's manifest; done reports an object removed or uploaded.
func (r *Runner) settle(ctx context.Context, bucket *blob.Bucket, bucketName string, integ *ent.StorageIntegration, runID string, u pendingAbort) (done bool, err error) {
	switch {
	case u.obj == nil:
		return false, destination.AbortUpload(ctx, bucket, bucketName, u.key, u.id)
	case u.obj.Bucket != bucketName:
		// The integration moved to another bucket since: nothing of
		// the run's is where it points now.
		return false, nil
	case u.obj.Kind == leftover.UploadManifest:
		done, err := r.uploadManifest(ctx, bucket, integ, u.obj.Key, u.data)
		if errors.Is(err, errOtherManifest) {
			r.log.Error("the key of a failed run's signed manifest holds another manifest, which is never replaced: the schedule's manifest chain has a gap at this run",
				"run_id", runID, "key", u.obj.Key)
			return false, nil
		}
		return done, err
	}
	// Another run may have adopted the object since (a Send now to the
	// same key finds an identical object and succeeds with it): then it
	// is that run's export.
	if adopted, err := r.d.Client.ExportRun.Query().Where(exportrun.IDNEQ(runID), exportrun.StateEQ(exportrun.StateSUCCEEDED),
		exportrun.Or(exportrun.ObjectURI(u.obj.URI), exportrun.ManifestURI(u.obj.URI))).Exist(tenant.System(ctx)); err != nil || adopted {
		return false, err
	}
	return destination.RemoveUnconfirmed(ctx, bucket, u.obj.Key, u.obj.Size, u.obj.Since)
}

// logSettled logs what settle did.
func (r *Runner) logSettled(runID string, u pendingAbort, done bool, later bool) {
	switch {
	case u.obj != nil && u.obj.Kind == leftover.UploadManifest:
		if done {
			r.log.Info("uploaded the signed manifest of a failed run's stored object (its upload had failed)", "run_id", runID, "key", u.obj.Key)
		}
	case done:
		r.log.Warn("removed an object of a failed run (stored by an attempt, or committed by the store without an answer)", "run_id", runID, "key", u.obj.Key)
	case u.obj != nil:
	case later:
		r.log.Info("aborted the multipart upload of a finished run", "run_id", runID, "upload_id", u.id)
	}
}

// abortUploads aborts the remembered multipart uploads (only ours: by upload
// id), keeping those the store could not be told about.
func (r *Runner) abortUploads(ctx context.Context, j *job, bucket *blob.Bucket) {
	var left []pendingAbort
	for _, u := range j.unaborted {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		done, err := r.settle(actx, bucket, j.bucketName, j.integ, j.run.ID, u)
		cancel()
		if err != nil {
			r.log.Warn("cleaning up after a failed upload failed (multipart abort, removing the failed run's object, or uploading its manifest); will retry",
				"run_id", j.run.ID, "upload_id", u.id, "key", u.key, "err", destination.Message(err))
			left = append(left, u)
			continue
		}
		r.logSettled(j.run.ID, u, done, false)
	}
	j.unaborted = left
}

// abortLater keeps settling, in the background, what a finished run could
// not: the multipart uploads it could not abort, the objects it could not
// remove and the manifest it could not upload, because the store was
// unreachable when the run gave up. Without this, parts would stay in the
// bucket (billed) until a lifecycle rule removes them, an export would be
// there without a SUCCEEDED run, or the schedule's manifest chain would
// have a gap. It tries every few seconds, backing off to every 30 s, for
// abortLaterFor, and stops with the runner. The objects and the manifest
// are also recorded on the run's row (leftovers) first, so that the
// upload sweep of this or any replica finishes them after a restart.
func (r *Runner) abortLater(j *job) {
	if len(j.unaborted) == 0 {
		return
	}
	pending, integ, bucketName, runID := j.unaborted, j.integ, j.bucketName, j.run.ID
	j.unaborted = nil
	if slices.ContainsFunc(pending, func(u pendingAbort) bool { return u.obj != nil }) {
		r.saveLeftovers(runID, pending)
	}
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		base := tenant.System(r.base)
		wait := abortLaterFirst
		for deadline := r.now().Add(abortLaterFor); len(pending) > 0; wait = min(2*wait, 30*time.Second) {
			select {
			case <-base.Done():
				return
			case <-time.After(wait):
			}
			if r.now().After(deadline) {
				for _, u := range pending {
					if u.obj == nil {
						r.log.Error("gave up aborting a failed multipart upload; its parts stay until a bucket lifecycle rule removes them", "run_id", runID, "upload_id", u.id, "key", u.key)
					}
				}
				// The objects and the manifest stay on the run's row
				// for the upload sweep.
				return
			}
			actx, cancel := context.WithTimeout(base, 15*time.Second)
			bucket, _, err := r.openBucket(actx, integ)
			if err == nil {
				var left []pendingAbort
				settled := false
				for _, u := range pending {
					done, aerr := r.settle(actx, bucket, bucketName, integ, runID, u)
					if aerr != nil {
						left = append(left, u)
						continue
					}
					settled = settled || u.obj != nil
					r.logSettled(runID, u, done, true)
				}
				pending = left
				_ = bucket.Close()
				if settled {
					r.saveLeftovers(runID, pending)
				}
			}
			cancel()
		}
	}()
}

// saveLeftovers records on the run's row the objects and manifest among
// pending (none: the row's are cleared).
func (r *Runner) saveLeftovers(runID string, pending []pendingAbort) {
	var objs []leftover.Object
	for _, u := range pending {
		if u.obj != nil {
			objs = append(objs, *u.obj)
		}
	}
	upd := r.d.Client.ExportRun.UpdateOneID(runID)
	if len(objs) == 0 {
		upd.ClearLeftovers()
	} else {
		upd.SetLeftovers(objs)
	}
	if err := upd.Exec(tenant.System(r.base)); err != nil {
		r.log.Error("recording what a failed run left in its store failed; a restart will not finish cleaning up", "run_id", runID, "err", err.Error())
	}
}

// How long abortLater keeps trying, and its first wait.
var (
	abortLaterFor   = time.Hour
	abortLaterFirst = 2 * time.Second
)

func contentType(p Plan) string {
	switch {
	case p.Compression == Gzip:
		return "application/gzip"
	case p.Compression == Zstd:
		return "application/zstd"
	case p.Format == CSV:
		return "text/csv; charset=utf-8"
	case p.Format == JSONL:
		return "application/x-ndjson"
	}
	return "application/vnd.apache.parquet"
}

package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/notify"
	"github.com/auditexport/auditexport/internal/ownership"
	"github.com/auditexport/auditexport/internal/tenant"
)

// autoPauseAfter consecutive failed runs pause a schedule.
const autoPauseAfter = 10

// persistEvery bounds how often progress is written for other replicas.
const persistEvery = time.Second

// progressBytes: a report is due after this many bytes even within a tick.
const progressBytes = 8 << 20

func (j *job) progress(now time.Time) Progress {
	phase, _ := j.phase.Load().(string)
	return Progress{RunID: j.run.ID, Phase: phase, Rows: j.counters.Rows.Load(), Bytes: j.counters.Bytes.Load(),
		TotalRows: j.total.Load(), ObjectURI: j.objectURI(), Time: now}
}

// reportLoop publishes progress for local watchers and persists it (with a
// heartbeat) for other replicas; it also notices a cancel requested through
// another replica. The returned func stops it.
func (r *Runner) reportLoop(ctx, dbctx context.Context, j *job) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	// Persisting (a database write, which may wait for SQLite's writer or
	// a slow PostgreSQL) runs on a goroutine of its own, so it never
	// delays the progress reports of the watchers on this process.
	persist := make(chan Progress, 1)
	persisted := make(chan struct{})
	go func() {
		defer close(persisted)
		for p := range persist {
			run, err := r.d.Client.ExportRun.UpdateOneID(j.run.ID).SetPhase(p.Phase).SetRows(p.Rows).SetBytes(p.Bytes).
				SetTotalRows(p.TotalRows).SetHeartbeatTime(p.Time).Save(dbctx)
			if err == nil && run.CancelRequested {
				r.cancelLocal(j.run.ID)
			}
		}
	}()
	go func() {
		defer close(stopped)
		defer close(persist)
		tick := time.NewTicker(r.cfg.ProgressEvery / 5)
		defer tick.Stop()
		var lastPub, lastPersist time.Time
		var lastBytes int64
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			now := r.now().UTC()
			p := j.progress(now)
			if now.Sub(lastPub) >= r.cfg.ProgressEvery || p.Bytes-lastBytes >= progressBytes {
				r.broker.publish(p)
				lastPub, lastBytes = now, p.Bytes
			}
			if now.Sub(lastPersist) >= persistEvery {
				lastPersist = now
				latest(persist, p) // a write still in flight gets the newer report next
			}
		}
	}()
	return func() { close(done); <-stopped; <-persisted }
}

func (r *Runner) cancelLocal(runID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.cancels[runID]; ok {
		c(errCanceled)
		return true
	}
	return false
}

// finish records the outcome, updates the schedule, notifies and audits.
func (r *Runner) finish(ctx context.Context, j *job, runID string, state exportrun.State, st Stats, rerr *RunError) {
	rerr = rerr.redacted()
	now := r.now().UTC()
	// The schedule's bookkeeping (last run, failure streak, the incremental
	// watermark, last success) is recorded before the run's outcome: a
	// reader who sees SUCCEEDED sees the watermark moved, and a crash
	// between the two leaves the run RUNNING, so orphan recovery retries it
	// (the retry finds its own bytes and writes nothing; the watermark has
	// moved already) — never a SUCCEEDED period whose rows the next period
	// exports again. If the schedule cannot be updated, the outcome is not
	// recorded either, for the same retry.
	// Both in one transaction: the outcome and the schedule's bookkeeping
	// are recorded together or not at all. That transaction is shared with
	// runs finishing at the same moment (db.Runs: group commit), so
	// thousands of runs ending together cost tens of commits, not thousands.
	// Written as typed rows (db.Runs), not statements per run: on
	// PostgreSQL a batch's starts, outcomes and schedules are one
	// statement; on SQLite a few statements in one transaction.
	var ended db.RunEnded
	end := r.runEnd(j, runID, state, st, rerr, now)
	record := func() (err error) {
		ended, err = r.d.Runs.End(ctx, end)
		if err == nil && end.Watermark != nil && ended.Schedule != nil && !ended.WatermarkMoved {
			r.log.Error("advancing the incremental watermark failed: it moved meanwhile", "run_id", runID, "from", end.Watermark.From, "to", end.Watermark.To)
		}
		return err
	}
	err := record()
	// The database unreachable for a moment (a connection reset, a
	// failover): retry for a while, so the run's own outcome is recorded
	// once it is back — not, half a minute later, the orphan sweep's
	// INTERRUPTED. Each try first checks the run is still unfinished: a
	// commit whose answer was lost may have landed, or the sweep ended it.
	for wait, deadline := 250*time.Millisecond, time.Now().Add(outcomeRetryFor); err != nil && ctx.Err() == nil && time.Now().Before(deadline); wait = min(2*wait, 2*time.Second) {
		r.log.Warn("recording run outcome failed; retrying", "run_id", runID, "state", state.String(), "err", err.Error())
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		cur, qerr := r.d.Client.ExportRun.Get(ctx, runID)
		switch {
		case qerr != nil:
			err = qerr
		case cur.State != exportrun.StateQUEUED && cur.State != exportrun.StateRUNNING:
			ended, err = db.RunEnded{Run: endedRun(cur), Schedule: r.recordedOn(ctx, j, runID)}, nil
			r.log.Warn("run outcome already recorded", "run_id", runID, "recorded", cur.State.String(), "state", state.String())
		default:
			err = record()
		}
	}
	if err != nil {
		r.log.Error("recording run outcome failed", "run_id", runID, "state", state.String(), "err", err.Error())
	}
	p := Progress{RunID: runID, Phase: state.String(), Rows: st.Rows, Bytes: st.Bytes, TotalRows: j.total.Load(), ObjectURI: j.objectURI(), Error: rerr, Time: now}
	if state != exportrun.StateSUCCEEDED {
		p.Rows, p.Bytes = j.counters.Rows.Load(), 0
	} else {
		p.Note = j.note
	}
	if state == exportrun.StateSKIPPED {
		p.ObjectURI = ""
	}
	if j.sc != nil && err == nil {
		r.afterSchedule(ctx, j, ended.Schedule, runID, state, rerr)
	}
	if err == nil {
		r.audit(ctx, j, ended.Run, state, rerr)
	}
	trigger := ""
	if j.run != nil {
		trigger = j.run.Trigger.String()
	}
	started := j.started
	if started.IsZero() {
		started = now
		if j.run != nil && j.run.StartTime != nil {
			started = *j.run.StartTime
		}
	}
	// Counted before the final message goes out: a watcher that saw the
	// run end and then reads /metrics finds it counted.
	r.metrics.RunFinished(state.String(), trigger, p.Rows, p.Bytes, now.Sub(started))
	// Its Send now slot too: a client that saw the run end may start another.
	r.releaseManual(runID)
	r.broker.publish(p)
	attrs := []any{"run_id", runID, "state", state.String(), "trigger", trigger, "rows", p.Rows, "bytes", p.Bytes}
	if j.sc != nil {
		attrs = append(attrs, "schedule_id", j.sc.ID)
	}
	level := slog.LevelInfo
	if rerr != nil {
		attrs = append(attrs, "error_code", rerr.Code)
		level = runErrorLevel(rerr.Code)
	}
	r.log.Log(ctx, level, "export run finished", attrs...)
}

// outcomeRetryFor is how long finish retries recording a run's outcome
// while the database is unreachable; below the orphan sweep's 30 s.
const outcomeRetryFor = 20 * time.Second

// runErrorLevel: a storage provider's refusal or outage is the customer's
// to fix (WARN); a failure of ours or of our database is the operator's
// (ERROR); expected ends (canceled, paused, lost authorization) are INFO.
func runErrorLevel(code string) slog.Level {
	switch {
	case strings.HasPrefix(code, "PROVIDER_"), code == "DESTINATION_UNAVAILABLE", code == "BAD_URI",
		code == "ELEMENT_INVALID", code == "INTEGRATION_DELETED", code == "CREDENTIALS_UNDECRYPTABLE",
		code == ObjectExistsCode, code == ManifestExistsCode:
		return slog.LevelWarn
	case code == "INTERNAL", code == "QUERY_FAILED", code == "INTERRUPTED", code == ManifestFailedCode:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// runEnd is the run's outcome as recorded, with its schedule's
// bookkeeping when it has a schedule (see finish).
func (r *Runner) runEnd(j *job, runID string, state exportrun.State, st Stats, rerr *RunError, now time.Time) db.RunEnd {
	// A run that never started (it failed while loading) starts when it
	// ends: decided in the database (COALESCE), since j.run is the row as
	// read before load set start_time.
	e := db.RunEnd{RunID: runID, State: state.String(), Time: now}
	if state == exportrun.StateSUCCEEDED {
		e.Rows, e.Bytes, e.Checksum, e.Note = st.Rows, st.Bytes, &st.Checksum, &j.note
	} else {
		e.Rows = j.counters.Rows.Load()
	}
	if state == exportrun.StateSKIPPED {
		e.ObjectURI = new(string)
	}
	if rerr != nil {
		e.Error = &db.RunEndError{Code: rerr.Code, Message: rerr.Message, ProviderMessage: rerr.ProviderMessage}
	}
	if j.sc == nil {
		return e
	}
	// The schedule: its last run; a success or a skip ends the failure
	// streak; a failure is counted in the database, not from the schedule
	// loaded at the run's start: runs of one schedule can overlap (several
	// slots or replicas, a slow run next to the next period, a retry), and a
	// snapshot + 1 lost their failures and let each overlapping run see the
	// 10th and pause (and mail) again. An incremental success moves the
	// watermark forward from the value this run started at (compare-and-set).
	// A schedule deleted meanwhile is skipped: the run's outcome still counts.
	e.ScheduleID = j.sc.ID
	switch state {
	case exportrun.StateSUCCEEDED, exportrun.StateSKIPPED:
		e.Effect = db.ScheduleSuccess
		if j.sc.Mode == schedule.ModeINCREMENTAL && state == exportrun.StateSUCCEEDED {
			e.Watermark = &db.Watermark{From: j.plan.SeqFrom, To: j.plan.SeqTo}
		}
	case exportrun.StateFAILED:
		e.Effect = db.ScheduleFailure
	}
	return e
}

// recordedOn is the run's schedule as End would have returned it, for an
// outcome found recorded (an End whose answer was lost): the schedule if
// this run is its last, so that the pause after repeated failures and the
// first failure's mail still happen; nil otherwise (another run's outcome
// came after, and decides those).
func (r *Runner) recordedOn(ctx context.Context, j *job, runID string) *db.EndedSchedule {
	if j.sc == nil {
		return nil
	}
	sc, err := r.d.Client.Schedule.Get(ctx, j.sc.ID)
	if err != nil || sc.LastRunID != runID {
		return nil
	}
	return &db.EndedSchedule{ID: sc.ID, State: sc.State.String(), ConsecutiveFailures: sc.ConsecutiveFailures}
}

// endedRun is a stored run as db.Runs.End returns it.
func endedRun(run *ent.ExportRun) db.EndedRun {
	return db.EndedRun{ID: run.ID, ScheduleID: run.ScheduleID, RequestedBy: run.RequestedBy, Trigger: run.Trigger.String(),
		ObjectURI: run.ObjectURI, Attempt: run.Attempt, Rows: run.Rows, Bytes: run.Bytes}
}

// afterSchedule acts on a recorded run's schedule sc (nil if deleted):
// pauses it when its owner lost their authorization or it failed too often,
// and mails the owner once per failure streak.
func (r *Runner) afterSchedule(ctx context.Context, j *job, sc *db.EndedSchedule, runID string, state exportrun.State, rerr *RunError) {
	pause := false
	if rerr != nil && rerr.Code == ownership.Code {
		// The safety net behind the pause made when the owner lost their
		// authorization (AccountService), for whatever slipped past it.
		if _, err := ownership.PauseSchedule(ctx, r.d.Client, j.sc.ID); err != nil {
			r.log.Error("pausing the schedule of an unauthorized owner failed", "schedule_id", j.sc.ID, "run_id", runID, "err", err.Error())
		}
	}
	if sc != nil && state == exportrun.StateFAILED && sc.ConsecutiveFailures >= autoPauseAfter && sc.State == schedule.StateACTIVE.String() {
		// Only the run whose update switches the schedule from ACTIVE
		// pauses it and mails the owner.
		k, err := r.d.Client.Schedule.Update().Where(schedule.ID(sc.ID), schedule.StateEQ(schedule.StateACTIVE)).
			SetState(schedule.StatePAUSED).SetPauseReason(schedule.PauseReasonREPEATED_FAILURES).ClearNextRunTime().Save(ctx)
		if err != nil {
			r.log.Error("auto-pausing schedule failed", "schedule_id", sc.ID, "run_id", runID, "err", err.Error())
		}
		pause = k == 1
	}
	// One mail per failure streak: the failure that moved the count from 0
	// (after a success, a skip or the schedule's creation). Later failures
	// are in the run history; a success resets the streak.
	if sc != nil && state == exportrun.StateFAILED && sc.ConsecutiveFailures == 1 &&
		rerr != nil && rerr.Code != "INTERRUPTED" && rerr.Code != errRunInProgress.Code {
		r.notifyFailure(ctx, j, runID, rerr)
	}
	if pause {
		r.notifyOwner(ctx, j.sc, runID, fmt.Sprintf("[auditexport] Schedule paused after %d failed runs: %s", autoPauseAfter, j.sc.Name),
			fmt.Sprintf("The schedule %q (%s) failed %d times in a row and was paused (reason REPEATED_FAILURES).\n"+
				"Last run: %s\nLast error: %s\n\nFix the cause, then resume the schedule.\n", j.sc.Name, j.sc.ID, autoPauseAfter, runID, rerr.Error()))
	}
}

// people are the schedule's recipients (owner, allowed notify_emails);
// a lookup failure is logged and mails nobody.
func (r *Runner) people(ctx context.Context, sc *ent.Schedule, runID string) notify.People {
	p, err := r.notifier.PeopleOf(ctx, sc)
	if err != nil {
		r.log.Error("loading the recipients of a notification failed", "run_id", runID, "schedule_id", sc.ID, "err", err.Error())
	}
	return p[sc.ID]
}

func (r *Runner) notifyFailure(ctx context.Context, j *job, runID string, rerr *RunError) {
	body := fmt.Sprintf("An export of schedule %q failed.\n\nSchedule: %s (%s)\nDestination: %s\nIntegration: %s\nRun: %s\nTime: %s\nError: %s (%s)\n",
		j.sc.Name, j.sc.Name, j.sc.ID, firstNonEmpty(j.objectURI(), j.sc.URI), j.sc.IntegrationName, runID,
		r.now().UTC().Format(time.RFC3339), rerr.Message, rerr.Code)
	if rerr.ProviderMessage != "" {
		body += "Provider message: " + rerr.ProviderMessage + "\n"
	}
	r.notifier.Send(ctx, notify.Message{To: r.people(ctx, j.sc, runID).All(), Subject: "[auditexport] Export failed: " + j.sc.Name, Body: body},
		"run_id", runID, "schedule_id", j.sc.ID)
}

func (r *Runner) notifyOwner(ctx context.Context, sc *ent.Schedule, runID, subject, body string) {
	if owner := r.people(ctx, sc, runID).Owner; owner != "" {
		r.notifier.Send(ctx, notify.Message{To: []string{owner}, Subject: subject, Body: body}, "run_id", runID, "schedule_id", sc.ID)
	}
}

func (r *Runner) audit(ctx context.Context, j *job, run db.EndedRun, state exportrun.State, rerr *RunError) {
	org, _ := tenant.Org(ctx)
	ev := auditlog.Event{OrgID: org, Category: "EXPORTS", Type: "EXPORT_RUN_FINISHED", Status: auditlog.StatusSuccess,
		UserID: run.RequestedBy, ObjectType: "EXPORT_RUN", ObjectID: run.ID,
		Metadata: map[string]any{"schedule_id": run.ScheduleID, "state": state.String(), "rows": run.Rows, "bytes": run.Bytes,
			"object_uri": run.ObjectURI, "trigger": run.Trigger, "attempt": run.Attempt}}
	if j.sc != nil && ev.UserID == "" {
		ev.UserID = j.sc.OwnerID
	}
	if state == exportrun.StateFAILED || state == exportrun.StateCANCELED {
		ev.Status = auditlog.StatusFailure
		if rerr != nil {
			ev.ErrorCode = rerr.Code
		}
	}
	if _, err := r.rec.Record(ctx, ev); err != nil {
		r.log.Error("auditing run failed", "run_id", run.ID, "err", err.Error())
	}
}

// Cancel requests cancellation of a queued or running run. The executing
// replica (this one, or another that polls the flag) aborts the upload.
func (r *Runner) Cancel(ctx context.Context, runID string) (*ent.ExportRun, error) {
	run, err := r.d.Client.ExportRun.Get(ctx, runID)
	if err != nil {
		return nil, err
	}
	if run.State != exportrun.StateQUEUED && run.State != exportrun.StateRUNNING {
		return run, ErrFinished
	}
	if run, err = r.d.Client.ExportRun.UpdateOneID(runID).SetCancelRequested(true).Save(ctx); err != nil {
		return nil, err
	}
	r.cancelLocal(runID)
	return run, nil
}

// maxScheduledAttempts bounds how often a scheduled run interrupted by a
// crash or shutdown is retried.
const maxScheduledAttempts = 5

// requeue hands an interrupted scheduled run back to the dispatcher queue.
func (r *Runner) requeue(ctx context.Context, runID string, attempt int) {
	err := r.d.Client.ExportRun.UpdateOneID(runID).SetState(exportrun.StateQUEUED).SetPhase(PhaseQueued).
		SetRunner("").ClearHeartbeatTime().SetAttempt(attempt + 1).SetRows(0).SetBytes(0).Exec(ctx)
	if err != nil {
		r.log.Error("requeueing interrupted run failed", "run_id", runID, "err", err.Error())
	}
}

// ErrFinished is returned when canceling a run that already ended.
var ErrFinished = errors.New("run already finished")

// Watch streams the progress of run until its terminal report (then the
// channel closes). run is the row as the caller read it — reading it, with
// the caller's organization, is the caller's check that it may see the
// run — and is where a watcher of a run executing elsewhere starts. A run
// executing in this process is followed live; otherwise the database is
// polled, so any replica can watch any run.
func (r *Runner) Watch(ctx context.Context, run *ent.ExportRun) <-chan Progress {
	runID := run.ID
	out := make(chan Progress, 4)
	if first, ch, ok := r.broker.subscribe(runID); ok {
		go func() {
			defer close(out)
			defer r.broker.unsubscribe(runID, ch)
			if !sendP(ctx, out, first) || Terminal(first.Phase) {
				return
			}
			for p := range ch {
				if !sendP(ctx, out, p) || Terminal(p.Phase) {
					return
				}
			}
		}()
		return out
	}
	// Not executed here: followed through the shared remote hub (one query
	// a tick for all such watchers), from the caller's row.
	ch, cancel := r.remote.subscribe(runID, ProgressOf(run))
	go func() {
		defer close(out)
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case p, ok := <-ch:
				if !ok || !sendP(ctx, out, p) || Terminal(p.Phase) {
					return
				}
			}
		}
	}()
	return out
}

func sendP(ctx context.Context, out chan<- Progress, p Progress) bool {
	select {
	case out <- p:
		return true
	case <-ctx.Done():
		return false
	}
}

// ProgressOf is the progress a stored run shows.
func ProgressOf(run *ent.ExportRun) Progress {
	p := Progress{RunID: run.ID, Phase: run.Phase, Rows: run.Rows, Bytes: run.Bytes, TotalRows: run.TotalRows,
		ObjectURI: run.ObjectURI, Note: run.Note, Time: run.UpdateTime}
	switch run.State {
	case exportrun.StateQUEUED:
		p.Phase = PhaseQueued
	case exportrun.StateRUNNING:
		if p.Phase == "" || Terminal(p.Phase) {
			p.Phase = PhaseQuerying
		}
	default:
		p.Phase = run.State.String()
	}
	if run.ErrorCode != "" {
		p.Error = &RunError{Code: run.ErrorCode, Message: run.ErrorMessage, ProviderMessage: run.ProviderMessage}
	}
	return p
}

// RecoverOrphans marks runs whose executing process stopped sending
// heartbeats as FAILED (INTERRUPTED), so no run stays RUNNING forever. A
// process that died (SIGKILL, crash) could not abort its S3 multipart
// upload; that is done here, in the background (see abortOrphanUploads).
func (r *Runner) RecoverOrphans(ctx context.Context, staleAfter time.Duration) (int, error) {
	sctx := tenant.System(ctx)
	cutoff := r.now().UTC().Add(-staleAfter)
	// Unclaimed queued runs (runner "") are waiting for a dispatcher slot,
	// not orphaned.
	stale := exportrun.And(exportrun.StateIn(exportrun.StateQUEUED, exportrun.StateRUNNING), exportrun.RunnerNEQ(""),
		exportrun.Or(exportrun.HeartbeatTimeLT(cutoff), exportrun.And(exportrun.HeartbeatTimeIsNil(), exportrun.CreateTimeLT(cutoff))))
	orphans, err := r.d.Client.ExportRun.Query().Where(stale).All(sctx)
	if err != nil || len(orphans) == 0 {
		return 0, err
	}
	var retry, fail []string
	for _, o := range orphans {
		if o.Trigger == exportrun.TriggerSCHEDULED && o.Attempt < maxScheduledAttempts {
			retry = append(retry, o.ID)
		} else {
			fail = append(fail, o.ID)
		}
	}
	n := 0
	if len(retry) > 0 {
		// Rescued: back to the queue with the next attempt; the period's
		// object key is deterministic, so a retry cannot add a second file.
		k, err := r.d.Client.ExportRun.Update().Where(stale, exportrun.IDIn(retry...)).
			SetState(exportrun.StateQUEUED).SetPhase(PhaseQueued).SetRunner("").ClearHeartbeatTime().AddAttempt(1).Save(sctx)
		if err != nil {
			return n, err
		}
		n += k
	}
	if len(fail) > 0 {
		k, err := r.d.Client.ExportRun.Update().Where(stale, exportrun.IDIn(fail...)).
			SetState(exportrun.StateFAILED).SetPhase(PhaseFailed).SetFinishTime(r.now().UTC()).
			SetErrorCode("INTERRUPTED").SetErrorMessage("the process running this export stopped; no object was committed").
			Save(sctx)
		if err != nil {
			return n, err
		}
		n += k
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for _, o := range orphans {
			r.abortOrphanUploads(tenant.System(r.base), o)
		}
	}()
	return n, nil
}

// abortOrphanUploads aborts the incomplete uploads of a run whose process
// died: S3 multipart uploads of its object key initiated while it ran (the
// window keeps other runs' uploads of the same key out), Azure blocks
// never committed. Best effort.
func (r *Runner) abortOrphanUploads(ctx context.Context, run *ent.ExportRun) {
	if run.ObjectURI == "" || run.StartTime == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	integ, err := r.cleanupIntegrationOf(ctx, run.ScheduleID)
	if err != nil || integ == nil {
		return
	}
	bucket, base, err := r.openBucket(ctx, integ)
	if err != nil {
		return
	}
	defer bucket.Close()
	from, to := run.StartTime.Add(-sweepSlack), *run.StartTime
	if run.HeartbeatTime != nil {
		to = *run.HeartbeatTime
	}
	if err := r.abortRunUploads(ctx, bucket, base, run, from, to.Add(persistEvery+sweepSlack), "aborted the upload of an interrupted run"); err != nil {
		r.log.Warn("aborting the uploads of an interrupted run failed", "run_id", run.ID, "err", destination.Message(err))
	}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

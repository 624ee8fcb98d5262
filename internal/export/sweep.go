package export

import (
	"context"
	"errors"
	"slices"
	"time"

	"gocloud.dev/blob"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/leftover"
	"github.com/auditexport/auditexport/internal/tenant"
)

// The upload sweep is the durable side of abortLater. abortLater retries,
// in memory, the S3 multipart aborts (and Azure block discards) a run could
// not make while the store was unreachable; a restart (or a replica that
// stops) forgets them, and their parts would stay in the bucket, billed,
// until a lifecycle rule removes them. The database already holds what is
// needed to find them again — every finished run's object key and the time
// it ran — so each process, from its start and then every
// uploadSweepEvery, looks at the keys of recently finished S3 and Azure
// runs that may have left something (FAILED, CANCELED, or SUCCEEDED after
// a retried attempt): it aborts the incomplete multipart uploads of the
// key initiated while the run ran, or discards the key's uncommitted
// blocks when no blob is committed there (destination.AbortUploadsBetween). A run is checked
// until one listing of its key succeeds; while a store does not answer,
// the pass is repeated every few seconds, backing off to 30 s.
var (
	// uploadSweepWindow: runs that finished longer ago are not looked at.
	uploadSweepWindow = 24 * time.Hour
	// uploadSweepEvery: how often runs finished since are looked at.
	uploadSweepEvery = 10 * time.Minute
)

// sweepSlack widens a run's time window for clock skew between this
// process and the store.
const sweepSlack = 10 * time.Second

// SweepUploads runs the upload sweep until ctx ends.
func (r *Runner) SweepUploads(ctx context.Context) {
	checked := map[string]time.Time{} // run id -> finish time, for runs found clean
	retry := abortLaterFirst
	for wait := time.Duration(0); ; {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if r.sweepUploads(ctx, checked) == 0 {
			wait, retry = uploadSweepEvery, abortLaterFirst
		} else {
			wait, retry = retry, min(2*retry, 30*time.Second)
		}
	}
}

// sweepUploads makes one pass and returns how many runs are still to be
// checked (their store did not answer, or another run of their schedule is
// under way and might own an upload of the same key).
func (r *Runner) sweepUploads(ctx context.Context, checked map[string]time.Time) (pending int) {
	sctx := tenant.System(ctx)
	since := r.now().UTC().Add(-uploadSweepWindow)
	for id, finished := range checked {
		if finished.Before(since) {
			delete(checked, id)
		}
	}
	pending = r.sweepLeftovers(sctx)
	c := r.d.Client
	runs, err := c.ExportRun.Query().Where(exportrun.FinishTimeGT(since), exportrun.StartTimeNotNil(), exportrun.ObjectURINEQ(""),
		exportrun.Or(exportrun.StateIn(exportrun.StateFAILED, exportrun.StateCANCELED),
			exportrun.And(exportrun.StateEQ(exportrun.StateSUCCEEDED), exportrun.AttemptGT(1)))).
		Order(ent.Asc(exportrun.FieldFinishTime)).All(sctx)
	if err != nil {
		r.log.Warn("upload sweep: listing finished runs failed", "err", err.Error())
		return pending + 1
	}
	byInteg := map[string][]*ent.ExportRun{}
	integs := map[string]*ent.StorageIntegration{}
	for _, run := range runs {
		if _, ok := checked[run.ID]; ok {
			continue
		}
		integ, err := r.cleanupIntegrationOf(sctx, run.ScheduleID)
		if err != nil {
			pending++
			continue
		}
		if integ == nil {
			checked[run.ID] = *run.FinishTime // nothing to abort there
			continue
		}
		// A run of the same schedule under way may own an upload of
		// the same key (a scheduled period's key is fixed): wait for it.
		if busy, err := c.ExportRun.Query().Where(exportrun.ScheduleID(run.ScheduleID),
			exportrun.StateIn(exportrun.StateQUEUED, exportrun.StateRUNNING)).Exist(sctx); err != nil || busy {
			pending++
			continue
		}
		integs[integ.ID] = integ
		byInteg[integ.ID] = append(byInteg[integ.ID], run)
	}
	for id, list := range byInteg {
		pending += r.sweepIntegration(sctx, integs[id], list, checked)
	}
	return pending
}

// sweepIntegration checks runs of one integration; the first failure to
// reach its store leaves the rest for the next pass.
func (r *Runner) sweepIntegration(ctx context.Context, integ *ent.StorageIntegration, runs []*ent.ExportRun, checked map[string]time.Time) int {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	bucket, base, err := r.openBucket(ctx, integ)
	var rerr *RunError
	if errors.As(err, &rerr) {
		// Credentials this process cannot decrypt: retrying will not help.
		for _, run := range runs {
			checked[run.ID] = *run.FinishTime
		}
		return 0
	}
	if err != nil {
		r.log.Warn("upload sweep: opening the bucket failed; will retry", "integration_id", integ.ID, "err", destination.Message(err))
		return len(runs)
	}
	defer bucket.Close()
	for i, run := range runs {
		if err := r.abortRunUploads(ctx, bucket, base, run, run.StartTime.Add(-sweepSlack), run.FinishTime.Add(sweepSlack), "upload sweep: aborted an incomplete upload left by a finished run"); err != nil {
			r.log.Warn("upload sweep: the store did not answer; will retry", "run_id", run.ID, "integration_id", integ.ID, "err", destination.Message(err))
			return len(runs) - i
		}
		checked[run.ID] = *run.FinishTime
	}
	return 0
}

// cleanupIntegrationOf is the integration a schedule exports to if a failed
// upload leaves something there to clean up (S3, Azure), nil otherwise (or
// when the schedule or integration is gone).
func (r *Runner) cleanupIntegrationOf(ctx context.Context, scheduleID string) (*ent.StorageIntegration, error) {
	integ, err := r.integrationOf(ctx, scheduleID)
	if integ == nil || err != nil {
		return nil, err
	}
	switch destination.Provider(integ.Provider) {
	case destination.S3, destination.AzureBlob:
		return integ, nil
	}
	return nil, nil
}

// abortRunUploads aborts the incomplete multipart uploads of run's object
// key initiated within [from, to] (the window keeps other runs' uploads of
// the same key out), logging each with msg. A key that is not under the
// integration (it was changed since) has nothing of ours.
func (r *Runner) abortRunUploads(ctx context.Context, bucket *blob.Bucket, base destination.Location, run *ent.ExportRun, from, to time.Time, msg string) error {
	key, err := destination.Key(base, run.ObjectURI)
	if err != nil {
		return nil
	}
	aborted, err := destination.AbortUploadsBetween(ctx, bucket, base.Bucket, key, from, to)
	for _, id := range aborted {
		r.log.Info(msg, "run_id", run.ID, "upload_id", id)
	}
	return err
}

// leftoverWindow: the leftovers of runs that finished longer ago are no
// longer looked at (they stay on the run's row).
var leftoverWindow = 7 * 24 * time.Hour

// sweepLeftovers settles what failed and canceled runs recorded as left in
// their store (ExportRun.leftovers, see abortLater): the objects they
// stored or may have stored are removed, the manifests they could not
// upload are uploaded. This is how that work survives a restart, or a
// replica that stops. It returns how many runs still have some.
func (r *Runner) sweepLeftovers(ctx context.Context) (pending int) {
	c := r.d.Client
	runs, err := c.ExportRun.Query().Where(exportrun.LeftoversNotNil(), exportrun.StateIn(exportrun.StateFAILED, exportrun.StateCANCELED),
		exportrun.FinishTimeGT(r.now().UTC().Add(-leftoverWindow))).Order(ent.Asc(exportrun.FieldFinishTime)).All(ctx)
	if err != nil {
		r.log.Warn("upload sweep: listing failed runs' leftovers failed", "err", err.Error())
		return 1
	}
	for _, run := range runs {
		if len(run.Leftovers) == 0 {
			continue
		}
		integ, err := r.integrationOf(ctx, run.ScheduleID)
		if err != nil {
			pending++
			continue
		}
		if integ == nil {
			r.saveLeftovers(run.ID, nil) // the schedule or its integration is gone, and what was there with it
			continue
		}
		if slices.ContainsFunc(run.Leftovers, func(o leftover.Object) bool { return o.Kind == leftover.Remove }) {
			// A run of the schedule under way may adopt an object
			// left at its key (an identical export): wait for it.
			if busy, err := c.ExportRun.Query().Where(exportrun.ScheduleID(run.ScheduleID),
				exportrun.StateIn(exportrun.StateQUEUED, exportrun.StateRUNNING)).Exist(ctx); err != nil || busy {
				pending++
				continue
			}
		}
		if !r.settleLeftovers(ctx, integ, run) {
			pending++
		}
	}
	return pending
}

// integrationOf is the integration a schedule exports to, nil when the
// schedule or the integration is gone.
func (r *Runner) integrationOf(ctx context.Context, scheduleID string) (*ent.StorageIntegration, error) {
	c := r.d.Client
	sc, err := c.Schedule.Get(ctx, scheduleID)
	if ent.IsNotFound(err) || err == nil && sc.IntegrationID == "" {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	integ, err := c.StorageIntegration.Get(ctx, sc.IntegrationID)
	if ent.IsNotFound(err) {
		return nil, nil
	}
	return integ, err
}

// settleLeftovers settles one run's leftovers; ok reports none left.
func (r *Runner) settleLeftovers(ctx context.Context, integ *ent.StorageIntegration, run *ent.ExportRun) (ok bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	bucket, base, err := r.openBucket(ctx, integ)
	var rerr *RunError
	if errors.As(err, &rerr) {
		return true // credentials this process cannot decrypt: the next pass tries again
	}
	if err != nil {
		r.log.Warn("upload sweep: opening the bucket failed; will retry", "integration_id", integ.ID, "err", destination.Message(err))
		return false
	}
	defer bucket.Close()
	var left []pendingAbort
	for _, o := range run.Leftovers {
		u := pendingAbort{key: o.Key, obj: &o}
		if o.Kind == leftover.UploadManifest {
			if run.ManifestURI != o.URI || len(run.Manifest) == 0 {
				continue // not the manifest recorded on the run: nothing to upload
			}
			u.data = run.Manifest
		}
		done, err := r.settle(ctx, bucket, base.Bucket, integ, run.ID, u)
		if err != nil {
			r.log.Warn("upload sweep: the store did not answer; will retry", "run_id", run.ID, "integration_id", integ.ID, "key", o.Key, "err", destination.Message(err))
			left = append(left, u)
			continue
		}
		r.logSettled(run.ID, u, done, true)
	}
	r.saveLeftovers(run.ID, left)
	return len(left) == 0
}

package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/auditexport/auditexport/clients/go/manifest"
	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/revision"
)

// ManifestExistsCode is the run error code for a manifest key that holds
// another manifest: like objects, manifests are never replaced.
const ManifestExistsCode = "MANIFEST_EXISTS"

// ManifestFailedCode: the object was stored but its manifest could not be
// made (the database, or the organization's signing key); the run fails
// and removes the object (run).
const ManifestFailedCode = "MANIFEST_FAILED"

// errChainMoved: another run of the schedule appended to the chain between
// reading its head and appending; build the link again.
var errChainMoved = errors.New("manifest chain moved")

// lockOf is the write-once retention of an integration's uploads.
func lockOf(row *ent.StorageIntegration) destination.ObjectLock {
	return destination.ObjectLock{Mode: row.ObjectLockMode, Days: row.ObjectLockDays}
}

// writeManifest stores the run's signed manifest next to its object
// (<object key>.manifest.json), after the object: a manifest never names an
// object that is not there. It is part of the delivery attempt, so a
// failure is retried like the upload's. The manifest's bytes are recorded
// on the run when its link is appended to the schedule's chain, and every
// later attempt (or the retry after a crash) uploads those same bytes, so a
// link is appended once per object.
func (r *Runner) writeManifest(ctx context.Context, j *job, bucket *blob.Bucket, st Stats) error {
	if r.signing == nil {
		return nil
	}
	dbctx := context.WithoutCancel(ctx)
	file, err := r.manifestFile(dbctx, j, st)
	if err != nil {
		// Ours or our database's, never the provider's: the object is
		// stored, its manifest not yet.
		r.log.Error("recording the export's manifest failed", "run_id", j.run.ID, "err", err.Error())
		if dbUnreachable(err) {
			return &RunError{Code: ManifestFailedCode, Message: "recording the export's manifest failed: the database was unreachable; the object the run stored is removed (a failed run leaves no export without its manifest)", retry: true}
		}
		return &RunError{Code: ManifestFailedCode, Message: "signing or recording the export's manifest failed; the object the run stored is removed (a failed run leaves no export without its manifest)"}
	}
	// The link is in the chain: from here on the object stays and this
	// manifest must reach the store, whatever the run's outcome (run).
	j.linked = file
	_, err = r.uploadManifest(ctx, bucket, j.integ, j.key+manifest.Suffix, file)
	if errors.Is(err, errOtherManifest) {
		return &RunError{Code: ManifestExistsCode, Message: fmt.Sprintf(
			"%s%s already exists with other content and manifests are never replaced; the object was stored, its manifest was not",
			j.objectURI(), manifest.Suffix)}
	}
	return err
}

// manifestUploadFault, when set (tests only), fails the manifest uploads
// for which it returns an error (atomic: background clean-up reads it).
var manifestUploadFault atomic.Pointer[func(key string) error]

// errOtherManifest: the manifest's key holds another manifest.
var errOtherManifest = errors.New("the key holds another manifest")

// uploadManifest stores file at key unless it is there already (an earlier
// attempt stored it, or the store committed without the answer reaching
// us): done reports an upload. Like objects, manifests are never replaced:
// another file at key is errOtherManifest.
func (r *Runner) uploadManifest(ctx context.Context, bucket *blob.Bucket, integ *ent.StorageIntegration, key string, file []byte) (done bool, err error) {
	if f := manifestUploadFault.Load(); f != nil {
		if err := (*f)(key); err != nil {
			return false, err
		}
	}
	// Upload, not WriteAll: see Runner.upload (gocloud's azureblob writer
	// panics in Close after a failed upload).
	err = bucket.Upload(ctx, key, bytes.NewReader(file), destination.Retain(&blob.WriterOptions{ContentType: "application/json", IfNotExist: true},
		lockOf(integ), r.now()))
	if gcerrors.Code(err) == gcerrors.FailedPrecondition {
		stored, rerr := bucket.ReadAll(ctx, key)
		if rerr != nil {
			return false, rerr
		}
		if !bytes.Equal(stored, file) {
			return false, errOtherManifest
		}
		return false, nil
	}
	return err == nil, err
}

// manifestPending is the error of a run whose object was stored, and its
// manifest's link appended to the chain, before err ended it: the object
// stays and the manifest is uploaded once the store answers (see run).
func manifestPending(err error) error {
	const stored = "the object was stored and its manifest signed, but uploading the manifest failed; it is uploaded once the storage provider answers again"
	var re *RunError
	if errors.As(err, &re) {
		c := *re
		c.Message = stored + " (" + re.Message + ")"
		return &c
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return &RunError{Code: "PROVIDER_UNAVAILABLE", Message: stored, ProviderMessage: destination.Message(err)}
}

// manifestFile returns the run's manifest: the one recorded by an earlier
// attempt for this very object, or a new link appended to the schedule's
// chain.
func (r *Runner) manifestFile(ctx context.Context, j *job, st Stats) ([]byte, error) {
	c := r.d.Client
	run, err := c.ExportRun.Get(ctx, j.run.ID)
	if err != nil {
		return nil, err
	}
	if len(run.Manifest) > 0 && run.ManifestURI == j.objectURI()+manifest.Suffix {
		return run.Manifest, nil
	}
	signer, err := r.signing.Active(ctx)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	element, err := json.Marshal(j.el.Spec)
	if err != nil {
		return nil, err
	}
	m := manifest.Manifest{
		Version: manifest.Version, OrganizationID: j.sc.OrgID, ScheduleID: j.sc.ID, ScheduleName: j.sc.Name,
		RunID: j.run.ID, Trigger: j.run.Trigger.String(), ElementID: j.el.ID, Element: element,
		Format: j.plan.Format, Compression: j.plan.Compression, RowCount: st.Rows, ByteCount: st.Bytes,
		SHA256: strings.TrimPrefix(st.Checksum, "sha256:"), ObjectKey: j.key, ObjectURI: j.objectURI(),
	}
	if run.PeriodStart != nil && run.PeriodEnd != nil {
		m.PeriodStart, m.PeriodEnd = run.PeriodStart.UTC(), run.PeriodEnd.UTC()
	}
	if j.sc.Mode == schedule.ModeINCREMENTAL {
		m.SequenceWindow = &manifest.Window{After: j.plan.SeqFrom, Through: j.plan.SeqTo}
	}
	for range 20 {
		sc, err := c.Schedule.Get(ctx, j.sc.ID)
		if err != nil {
			return nil, err
		}
		m.CreateTime = r.now().UTC()
		m.Chain = manifest.Chain{Sequence: sc.ManifestSequence + 1, Previous: sc.ManifestHead}
		if sc.ManifestSequence == 0 {
			if m.Chain.Start, err = r.chainStart(ctx, j); err != nil {
				return nil, err
			}
		}
		file, err := manifest.Sign(&m, signer.KeyID, signer.Key)
		if err != nil {
			return nil, err
		}
		err = db.WithTx(ctx, c, func(tx *ent.Client) error {
			n, err := tx.Schedule.Update().Where(schedule.ID(sc.ID), schedule.ManifestSequence(sc.ManifestSequence)).
				SetManifestSequence(m.Chain.Sequence).SetManifestHead(manifest.Hash(file)).Save(revision.Bookkeeping(ctx))
			if err != nil {
				return err
			}
			if n != 1 {
				return errChainMoved
			}
			return tx.ExportRun.UpdateOneID(j.run.ID).SetManifest(file).SetManifestURI(j.objectURI() + manifest.Suffix).Exec(ctx)
		})
		if errors.Is(err, errChainMoved) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return file, nil
	}
	return nil, fmt.Errorf("appending to the manifest chain of schedule %s: it kept moving", j.sc.ID)
}

// chainStart explains the first link of a schedule's chain.
func (r *Runner) chainStart(ctx context.Context, j *job) (string, error) {
	n, err := r.d.Client.ExportRun.Query().Where(exportrun.ScheduleID(j.sc.ID), exportrun.StateEQ(exportrun.StateSUCCEEDED),
		exportrun.IDNEQ(j.run.ID)).Count(ctx)
	if err != nil {
		return "", err
	}
	if n == 0 {
		return "first export of this schedule", nil
	}
	return fmt.Sprintf("first signed manifest of this schedule; its %d earlier successful runs predate signed manifests", n), nil
}

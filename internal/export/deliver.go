package export

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/auditexport/auditexport/ent/exportrun"
)

// ObjectExistsCode is the run error code for an object key that already
// holds a different export: objects are never replaced.
const ObjectExistsCode = "OBJECT_EXISTS"

// beforeUpload, when set (tests only), runs between the existence check
// and the conditional upload: the window in which another writer may
// create the key.
var beforeUpload func(key string)

func (j *job) objectURI() string {
	if p := j.uri.Load(); p != nil {
		return *p
	}
	return ""
}

// deliver makes one attempt to store the run's object. Objects are
// immutable once written: every upload is a conditional create, so an
// export never replaces another one (a replaced object of an incremental
// schedule would lose rows for good: the watermark has moved past them).
// When the key is taken:
//   - a Send now writes under a distinct key instead, the rendered name
//     with the run id before its extension, and says so in the run's note;
//   - any other run (a scheduled period, or an attempt of this run whose
//     upload may have committed before its answer was lost) succeeds
//     without writing if the stored object has exactly the bytes this run
//     produces (same sha256), and fails with OBJECT_EXISTS otherwise.
//
// The existence check also serves as the preflight: wrong credentials, a
// missing permission or an unreachable store fail in one round trip,
// before a row is read.
func (r *Runner) deliver(ctx context.Context, j *job, bucket *blob.Bucket) (Stats, error) {
	exists, err := objectExists(ctx, bucket, j.key)
	if err != nil {
		return Stats{}, err
	}
	sendNow := j.run.Trigger == exportrun.TriggerSEND_NOW
	if exists && sendNow && !j.tried && !j.renamed {
		if err := r.rename(ctx, j); err != nil {
			return Stats{}, err
		}
		return r.deliver(ctx, j, bucket)
	}
	if exists {
		st, err := r.encodeOnly(ctx, j)
		if err != nil {
			return st, err
		}
		return r.sameAsStored(ctx, j, bucket, st)
	}
	j.tried = true
	if beforeUpload != nil {
		beforeUpload(j.key)
	}
	st, err := r.upload(ctx, j, bucket)
	if err != nil && gcerrors.Code(err) == gcerrors.FailedPrecondition {
		// Created by someone else since the check (the condition held
		// the line). The bytes were produced, so compare right away.
		st, err = r.sameAsStored(ctx, j, bucket, st)
		if sendNow && !j.renamed && isObjectExists(err) {
			if err := r.rename(ctx, j); err != nil {
				return Stats{}, err
			}
			return r.deliver(ctx, j, bucket)
		}
	}
	return st, err
}

// objectExists asks the store for the object itself rather than its
// attributes: a HEAD answer has no body, so a refusal would lose the
// provider's message ("SignatureDoesNotMatch: The request signature we
// calculated does not match…") that the run and its e-mail must carry.
// The reader is closed at once; nothing is read.
func objectExists(ctx context.Context, bucket *blob.Bucket, key string) (bool, error) {
	rd, err := bucket.NewReader(ctx, key, nil)
	if err == nil {
		_ = rd.Close()
		return true, nil
	}
	if gcerrors.Code(err) == gcerrors.NotFound {
		return false, nil
	}
	return false, err
}

func isObjectExists(err error) bool {
	re, ok := err.(*RunError)
	return ok && re.Code == ObjectExistsCode
}

// rename moves a Send now to its distinct key and records it.
func (r *Runner) rename(ctx context.Context, j *job) error {
	taken := j.objectURI()
	uri := withRunID(taken, j.run.ID)
	j.key = withRunID(j.key, j.run.ID)
	j.uri.Store(&uri)
	j.renamed, j.tried = true, false
	j.note = fmt.Sprintf("%s already held an export and exports are never replaced; this Send now was written to %s", taken, uri)
	j.counters.Rows.Store(0)
	j.counters.Bytes.Store(0)
	r.log.Info("object key taken; Send now writes under a distinct key", "run_id", j.run.ID, "rendered", taken, "object_uri", uri)
	return r.d.Client.ExportRun.UpdateOneID(j.run.ID).SetObjectURI(uri).Exec(context.WithoutCancel(ctx))
}

// exportExtensions are the file name endings CheckExtension allows, longest
// first within each format, so the run id goes before the whole ending.
var exportExtensions = func() []string {
	var out []string
	for _, b := range []string{".csv", ".jsonl", ".ndjson", ".parquet"} {
		for _, c := range []string{".gz", ".zstd", ".zst", ""} {
			out = append(out, b+c)
		}
	}
	return out
}()

// withRunID puts ".<run id>" before the export's file extension:
// "…/audit-2026-12-02.csv.gz" becomes "…/audit-2026-12-02.run_….csv.gz".
func withRunID(name, runID string) string {
	base := name[strings.LastIndexByte(name, '/')+1:]
	lower := strings.ToLower(base)
	for _, ext := range exportExtensions {
		if strings.HasSuffix(lower, ext) && len(base) > len(ext) {
			cut := len(name) - len(ext)
			return name[:cut] + "." + runID + name[cut:]
		}
	}
	return name + "." + runID
}

// encodeOnly produces the run's bytes without storing them, for their
// checksum.
func (r *Runner) encodeOnly(ctx context.Context, j *job) (Stats, error) {
	j.phase.Store(PhaseUploading)
	st, err := Write(ctx, r.d, j.plan, io.Discard, &j.counters)
	if err != nil {
		var qe *QueryError
		if ctx.Err() == nil && errors.As(err, &qe) {
			return st, r.queryError(ctx, err)
		}
	}
	return st, err
}

// sameAsStored compares the stored object with the bytes this run
// produced: identical means an earlier attempt stored them (success, nothing
// written); different is OBJECT_EXISTS.
func (r *Runner) sameAsStored(ctx context.Context, j *job, bucket *blob.Bucket, st Stats) (Stats, error) {
	j.phase.Store(PhaseFinalizing)
	rd, err := bucket.NewReader(ctx, j.key, nil)
	if err != nil {
		return st, err
	}
	defer rd.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rd); err != nil {
		return st, err
	}
	stored := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if stored == st.Checksum {
		j.note = fmt.Sprintf("%s already held exactly this export (same sha256); nothing was written", j.objectURI())
		r.log.Info("identical object already stored; nothing written", "run_id", j.run.ID, "object_uri", j.objectURI())
		return st, nil
	}
	return st, &RunError{Code: ObjectExistsCode, Message: fmt.Sprintf(
		"%s already exists with different content (stored %s, this run %s) and exports are never replaced: "+
			"make the schedule's URI unique per run (e.g. add {time} or {run_id}) or move the object away, then run again",
		j.objectURI(), shortSum(stored), shortSum(st.Checksum))}
}

func shortSum(s string) string {
	if len(s) > len("sha256:")+12 {
		return s[:len("sha256:")+12] + "…"
	}
	return s
}

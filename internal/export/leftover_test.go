package export_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob"

	"github.com/auditexport/auditexport/clients/go/manifest"
	"github.com/auditexport/auditexport/clients/go/verify"
	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/ent/schedule"
	"github.com/auditexport/auditexport/internal/auditlog"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/export"
	"github.com/auditexport/auditexport/internal/leftover"
	"github.com/auditexport/auditexport/internal/secrets"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestFailedManifestUploadFinishedAfterRestart: a run stores its object and
// appends its manifest's link to the schedule's chain, then every upload of
// the manifest fails. The run ends FAILED saying the object was stored, and
// keeps it: removing it, as a failed run's object otherwise is, would leave
// a gap in the chain an auditor verifies. The runner stops (a restart
// forgets what it kept in memory); the next process's upload sweep finds
// the manifest to upload on the run's row, uploads the recorded bytes, and
// the bucket verifies whole.
func TestFailedManifestUploadFinishedAfterRestart(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		ctx, orgID, runID, dir := queuedRun(t, d, schedule.StateACTIVE, "", exportrun.TriggerSEND_NOW)
		recordEvents(t, d, ctx, orgID, 5)
		keys, err := secrets.LoadOrCreate(filepath.Join(t.TempDir(), "master.key"))
		testenv.Must(t, err)

		undo := export.SetManifestUploadFault(func(string) error { return errors.New("injected: the store stopped answering") })
		r := signedRunner(t, d, dir, keys)
		r.Execute(ctx, claimedRow(t, d, ctx, runID))
		r.Close(ctx) // its background retries end with it
		undo()

		run, err := d.Client.ExportRun.Get(ctx, runID)
		testenv.Must(t, err)
		if run.State != exportrun.StateFAILED || !strings.Contains(run.ErrorMessage, "the object was stored") {
			t.Fatalf("run %s %s: %q", run.State, run.ErrorCode, run.ErrorMessage)
		}
		if len(run.Manifest) == 0 || run.ManifestURI != run.ObjectURI+manifest.Suffix {
			t.Fatalf("manifest %d bytes at %q, want one recorded for %q", len(run.Manifest), run.ManifestURI, run.ObjectURI)
		}
		if len(run.Leftovers) != 1 || run.Leftovers[0].Kind != leftover.UploadManifest || run.Leftovers[0].URI != run.ManifestURI {
			t.Fatalf("leftovers %+v, want the manifest to upload", run.Leftovers)
		}
		object := strings.TrimPrefix(run.ObjectURI, "file://")
		if _, err := os.Stat(object); err != nil {
			t.Fatalf("the failed run's object: %v (it is in the chain, it must stay)", err)
		}
		if _, err := os.Stat(object + manifest.Suffix); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("manifest before the sweep: %v, want none (every upload failed)", err)
		}

		r2 := signedRunner(t, d, dir, keys)
		left := export.SweepOnce(ctx, r2)
		r2.Close(ctx)
		if left != 0 {
			t.Errorf("sweep left %d runs for later", left)
		}
		stored, err := os.ReadFile(object + manifest.Suffix)
		testenv.Must(t, err)
		if string(stored) != string(run.Manifest) {
			t.Errorf("uploaded manifest differs from the run's recorded one")
		}
		if got, err := d.Client.ExportRun.Get(ctx, runID); err != nil || len(got.Leftovers) != 0 {
			t.Errorf("leftovers after the sweep: %v %v", got.Leftovers, err)
		}
		rep := verifyDir(t, d, ctx, dir)
		if !rep.OK() || rep.Verified != 1 || len(rep.Chains) != 1 || rep.Chains[0].Links != 1 {
			t.Errorf("verify: %+v", rep)
		}
	})
}

// TestFailedRunObjectsRemovedAfterRestart: objects failed runs stored or
// may have stored (recorded on their rows: leftovers) are removed by the
// upload sweep of a process that did not run them — but only an object of
// the recorded size written since the recorded upload start, and never one
// that another run adopted since (SUCCEEDED with the same URI).
func TestFailedRunObjectsRemovedAfterRestart(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		ctx, orgID, runID, dir := queuedRun(t, d, schedule.StateACTIVE, "", exportrun.TriggerSEND_NOW)
		recordEvents(t, d, ctx, orgID, 3)
		// A run that succeeds gives the bucket's name and key layout.
		r := signedRunner(t, d, dir, nil)
		r.Execute(ctx, claimedRow(t, d, ctx, runID))
		r.Close(ctx)
		ok, err := d.Client.ExportRun.Get(ctx, runID)
		testenv.Must(t, err)
		if ok.State != exportrun.StateSUCCEEDED {
			t.Fatalf("setup run %s: %s", ok.State, ok.ErrorMessage)
		}
		integ, err := d.Client.StorageIntegration.Query().Only(ctx)
		testenv.Must(t, err)
		base, err := destination.ParseDestination(destination.Provider(integ.Provider), integ.Destination)
		testenv.Must(t, err)
		okKey, err := destination.Key(base, ok.ObjectURI)
		testenv.Must(t, err)
		keyDir := path.Dir(okKey)

		since := time.Now().Add(-time.Second)
		// failedRun writes name (content) and records a FAILED run that
		// may have stored it with size bytes.
		failedRun := func(name, content string, size int64) *ent.ExportRun {
			t.Helper()
			testenv.Must(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
			uri := "file://" + filepath.Join(dir, name)
			fin := time.Now()
			run, err := d.Client.ExportRun.Create().SetScheduleID(ok.ScheduleID).SetTrigger(exportrun.TriggerSEND_NOW).SetRequestedBy(ok.RequestedBy).
				SetState(exportrun.StateFAILED).SetStartTime(since).SetFinishTime(fin).SetObjectURI(uri).
				SetLeftovers([]leftover.Object{{Kind: leftover.Remove, Bucket: base.Bucket, Key: path.Join(keyDir, name), URI: uri, Size: size, Since: since}}).
				Save(ctx)
			testenv.Must(t, err)
			return run
		}
		removed := failedRun("removed.csv", "a,b\n", 4)
		otherSize := failedRun("other-size.csv", "a,b\n", 5) // not what the run sent: someone else's
		adopted := failedRun("adopted.csv", "a,b\n", 4)
		if _, err := d.Client.ExportRun.Create().SetScheduleID(ok.ScheduleID).SetTrigger(exportrun.TriggerSEND_NOW).SetRequestedBy(ok.RequestedBy).
			SetState(exportrun.StateSUCCEEDED).SetStartTime(time.Now()).SetFinishTime(time.Now()).SetObjectURI(adopted.ObjectURI).Save(ctx); err != nil {
			t.Fatal(err)
		}

		r2 := signedRunner(t, d, dir, nil)
		left := export.SweepOnce(ctx, r2)
		r2.Close(ctx)
		if left != 0 {
			t.Errorf("sweep left %d runs for later", left)
		}
		for _, c := range []struct {
			run  *ent.ExportRun
			gone bool
		}{{removed, true}, {otherSize, false}, {adopted, false}, {ok, false}} {
			_, err := os.Stat(strings.TrimPrefix(c.run.ObjectURI, "file://"))
			if gone := errors.Is(err, os.ErrNotExist); gone != c.gone {
				t.Errorf("%s after the sweep: %v, want removed=%v", c.run.ObjectURI, err, c.gone)
			}
			if got, err := d.Client.ExportRun.Get(ctx, c.run.ID); err != nil || len(got.Leftovers) != 0 {
				t.Errorf("run %s leftovers after the sweep: %v %v", c.run.ID, got.Leftovers, err)
			}
		}
	})
}

func recordEvents(t *testing.T, d *db.DB, ctx context.Context, orgID string, n int) {
	t.Helper()
	rec := auditlog.NewRecorder(d.Client, nil)
	for range n {
		if _, err := rec.Record(ctx, auditlog.Event{OrgID: orgID, Category: "TEST", Type: "EVENT"}); err != nil {
			t.Fatal(err)
		}
	}
}

// signedRunner is localRunner signing manifests with keys (nil: none) and
// retrying quickly.
func signedRunner(t *testing.T, d *db.DB, dir string, keys *secrets.Keyring) *export.Runner {
	t.Helper()
	return localRunnerWith(t, d, dir, keys, export.Config{MaxAttempts: 2, RetryInitial: 10 * time.Millisecond})
}

// verifyDir verifies the exports under dir with the organization's keys.
func verifyDir(t *testing.T, d *db.DB, ctx context.Context, dir string) *verify.Report {
	t.Helper()
	rows, err := d.Client.SigningKey.Query().All(ctx)
	testenv.Must(t, err)
	keys := map[string]ed25519.PublicKey{}
	for _, k := range rows {
		keys[k.ID] = ed25519.PublicKey(k.PublicKey)
	}
	b, err := blob.OpenBucket(ctx, "file://"+dir+"?metadata=skip")
	testenv.Must(t, err)
	defer b.Close()
	rep, err := verify.Bucket(ctx, b, "", verify.Options{Keys: keys})
	testenv.Must(t, err)
	return rep
}

// TestManifestFailedRemovesObject: a run whose manifest cannot be signed
// (the organization's signing key does not decrypt with this process's
// master key) fails MANIFEST_FAILED after storing its object, and removes
// that object: a failed run leaves no export without its manifest.
func TestManifestFailedRemovesObject(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		ctx, orgID, runID, dir := queuedRun(t, d, schedule.StateACTIVE, "", exportrun.TriggerSEND_NOW)
		recordEvents(t, d, ctx, orgID, 3)
		keys, err := secrets.LoadOrCreate(filepath.Join(t.TempDir(), "master.key"))
		testenv.Must(t, err)
		r := signedRunner(t, d, dir, keys)
		r.Execute(ctx, claimedRow(t, d, ctx, runID)) // makes the organization's signing key
		r.Close(ctx)
		first, err := d.Client.ExportRun.Get(ctx, runID)
		testenv.Must(t, err)
		if first.State != exportrun.StateSUCCEEDED {
			t.Fatalf("first run %s: %s", first.State, first.ErrorMessage)
		}

		other, err := secrets.LoadOrCreate(filepath.Join(t.TempDir(), "other.key"))
		testenv.Must(t, err)
		run, err := d.Client.ExportRun.Create().SetScheduleID(first.ScheduleID).SetTrigger(exportrun.TriggerSEND_NOW).SetRequestedBy(first.RequestedBy).Save(ctx)
		testenv.Must(t, err)
		r2 := signedRunner(t, d, dir, other)
		r2.Execute(ctx, run)
		r2.Close(ctx)
		got, err := d.Client.ExportRun.Get(ctx, run.ID)
		testenv.Must(t, err)
		if got.State != exportrun.StateFAILED || got.ErrorCode != export.ManifestFailedCode || !strings.Contains(got.ErrorMessage, "removed") {
			t.Fatalf("run with an undecryptable signing key: %s %s %q", got.State, got.ErrorCode, got.ErrorMessage)
		}
		if _, err := os.Stat(strings.TrimPrefix(got.ObjectURI, "file://")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the failed run's object: %v, want removed", err)
		}
		if _, err := os.Stat(strings.TrimPrefix(first.ObjectURI, "file://")); err != nil {
			t.Errorf("the earlier run's object: %v", err)
		}
	})
}

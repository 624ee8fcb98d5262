package integration_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/auditexport/auditexport/clients/go/manifest"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestFailedManifestUploadAfterRestart, for S3, GCS and Azure: the store
// goes down exactly when a run uploads its signed manifest (the proxy
// refuses from the first request naming a manifest key), after the object
// was stored and the manifest's link appended to the schedule's chain.
// The run ends FAILED with the provider's error, says that the object was
// stored, and keeps it: removing it, as a failed run's object otherwise
// is, would leave a gap in the chain an auditor verifies. The server
// restarts while the store is still down (forgetting its in-memory
// retries); once the store is back, the restarted server's upload sweep
// uploads the manifest from the run's row, and the next Send now's
// manifest follows it in the chain.
func TestFailedManifestUploadAfterRestart(t *testing.T) {
	t.Parallel()
	for _, provider := range []string{"s3", "gcs", "azure"} {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			e, _, st := sfSetupRows(t, provider, 500)
			st.proxy.RefuseOn(manifest.Suffix)
			xs := e.sendNow(st.schID)
			end := xs.Terminal(120 * time.Second)
			run := e.getRun(xs.RunID())
			if st.proxy.Tripped() != 1 {
				t.Fatalf("no manifest upload went through the proxy (run %v)", run)
			}
			if end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_FAILED || run.GetState() != pb.RunState_RUN_STATE_FAILED {
				t.Fatalf("run whose manifest upload failed: stream %v, run %v", end, run)
			}
			xfCheckProviderError(t, "GetExportRun", run.GetError(), "PROVIDER_UNAVAILABLE")
			if msg := run.GetError().GetMessage(); !strings.Contains(msg, "the object was stored") || !strings.Contains(msg, "manifest") {
				t.Errorf("error message %q does not say the object was stored and its manifest is to come", msg)
			}
			key := st.key(t, run.GetObjectUri())
			if keys := st.objects(t); !slices.Equal(keys, []string{key}) {
				t.Fatalf("objects while the store is down: %v, want the run's object %s alone", keys, key)
			}

			e.s.Restart()
			if !e.s.WaitLogs(`"msg":"upload sweep: the store did not answer; will retry","run_id":"`+run.GetId()+`"`, 60*time.Second) {
				t.Fatal("the restarted server did not try to upload the failed run's manifest")
			}
			st.proxy.SetMode(testenv.Pass)
			sfWaitFor(t, "the failed run's manifest", 60*time.Second, func() bool { return slices.Contains(st.objects(t), key+manifest.Suffix) })
			if !e.s.WaitLogs(`"msg":"uploaded the signed manifest of a failed run's stored object (its upload had failed)","run_id":"`+run.GetId()+`"`, 10*time.Second) {
				t.Error("the manifest is there, but the restarted server did not log uploading it")
			}
			keys := mfSigningKeys(t, e)
			first := st.read(t, key+manifest.Suffix)
			m1, _, err := manifest.Open(first, keys)
			testenv.Must(t, err)
			sum := sha256.Sum256(st.read(t, key))
			if m1.RunID != run.GetId() || m1.SHA256 != hex.EncodeToString(sum[:]) || m1.Chain.Sequence != 1 {
				t.Errorf("uploaded manifest: run %s, sha256 %s, link #%d; want run %s, sha256 %x, link #1", m1.RunID, m1.SHA256, m1.Chain.Sequence, run.GetId(), sum)
			}

			xs2 := e.sendNow(st.schID)
			run2 := sfCheckSucceeded(t, e, st, xs2, xs2.Terminal(60*time.Second), key)
			m2, _, err := manifest.Open(st.read(t, st.key(t, run2.GetObjectUri())+manifest.Suffix), keys)
			testenv.Must(t, err)
			if m2.Chain.Sequence != 2 || m2.Chain.Previous != manifest.Hash(first) {
				t.Errorf("next manifest: link #%d after %s, want #2 after %s (the failed run's)", m2.Chain.Sequence, m2.Chain.Previous, manifest.Hash(first))
			}
		})
	}
}

// mfSigningKeys are the organization's manifest signing keys (public
// halves) by key id, as ListSigningKeys returns them.
func mfSigningKeys(t *testing.T, e xfEnv) map[string]ed25519.PublicKey {
	t.Helper()
	keys := map[string]ed25519.PublicKey{}
	list, _ := e.must("ListSigningKeys", `{}`)["signingKeys"].([]any)
	for _, k := range list {
		m, _ := k.(map[string]any)
		id, _ := m["id"].(string)
		pub, err := base64.StdEncoding.DecodeString(m["publicKey"].(string))
		testenv.Must(t, err)
		keys[id] = ed25519.PublicKey(pub)
	}
	if len(keys) == 0 {
		t.Fatal("ListSigningKeys: no keys")
	}
	return keys
}

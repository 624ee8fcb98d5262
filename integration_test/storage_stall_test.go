package integration_test

import (
	"strings"
	"testing"
	"time"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestStorageStall: the store (MinIO, fake-gcs-server, Azurite) turns into
// a black hole in the middle of an upload — the open connections stop
// forwarding either way (the store neither reads the part, chunk or block
// being sent nor answers), and new connections are accepted and never
// answered. With --storage-stall-timeout 2s each request fails after 2 s
// without a byte moving, is retried by the SDK and by the run's attempts,
// and the run ends FAILED (PROVIDER_UNAVAILABLE, the provider message
// naming the stall timeout, the owner mailed) within a bounded time
// instead of hanging; nothing is stored, and once the store answers again
// nothing of the failed upload is left (S3: its multipart upload aborted;
// Azure: no uncommitted blocks) and the next Send now succeeds.
func TestStorageStall(t *testing.T) {
	t.Parallel()
	sfEachProvider(t, []string{"--storage-stall-timeout", "2s"}, func(t *testing.T, e xfEnv, mp *testenv.Mailpit, st *sfStore) {
		start := time.Now()
		xs := sfStartUpload(t, e, st)
		if st.provider == "azure" {
			// The store stops answering with a block staged: there
			// are uncommitted blocks to be cleaned up. (S3: the
			// multipart upload exists from the first part on; GCS's
			// resumable session is not visible.)
			sfWaitFor(t, "a staged block", 60*time.Second, func() bool {
				if l := xs.Last(); l != nil && testenv.IsTerminal(l.GetPhase()) {
					t.Fatalf("run ended before a block was staged: %v", l)
				}
				return len(st.leftovers(t)) > 0
			})
		}
		st.strike(testenv.Blackhole)
		st.idle() // until the next export: the run only waits for stalls now
		stalled := time.Now()
		end := xs.Terminal(150 * time.Second)
		took := time.Since(stalled)
		run := e.getRun(xs.RunID())
		t.Logf("run ended %v %s after the store stopped answering (%s into the run), attempt %d: %v", end.GetPhase(),
			took.Round(time.Millisecond), stalled.Sub(start).Round(time.Millisecond), run.GetAttempt(), run.GetError())
		if end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_FAILED || run.GetState() != pb.RunState_RUN_STATE_FAILED || run.GetFinishTime() == nil {
			t.Fatalf("run against a black-holed store: stream %v, run %v", end, run)
		}
		// 4 attempts, each ending on 2 s stalls (the SDK's tries
		// included), backoff between them, and the abort of an S3
		// multipart upload also stalling. Without the stall timeout the
		// first request alone waited 60 s for response headers, and a
		// part stuck mid-body forever.
		if took > 100*time.Second {
			t.Errorf("the run took %s to fail after the store stopped answering, want < 100 s", took.Round(time.Second))
		}
		if run.GetAttempt() != 4 {
			t.Errorf("run failed on attempt %d, want the whole budget (4)", run.GetAttempt())
		}
		xfCheckProviderError(t, "GetExportRun", run.GetError(), "PROVIDER_UNAVAILABLE")
		pm := run.GetError().GetProviderMessage()
		if !strings.Contains(pm, "stalled") || !strings.Contains(pm, "2s") || !strings.Contains(pm, "--storage-stall-timeout") {
			t.Errorf("provider message %q does not name the stall timeout", pm)
		}
		if end.GetError().GetProviderMessage() != pm {
			t.Errorf("stream provider message %q, run %q", end.GetError().GetProviderMessage(), pm)
		}
		xfFailureMail(t, mp, xs.RunID(), st.schNam, pm)
		failedKey := sfFailedRunOwnOnly(t, st, run)
		var running int
		if err := e.s.OpenDB().QueryRow("SELECT COUNT(*) FROM export_runs WHERE state IN ('QUEUED','RUNNING')").Scan(&running); err != nil {
			t.Fatal(err)
		}
		if running != 0 {
			t.Errorf("%d runs QUEUED or RUNNING after the run failed", running)
		}

		// The store answers again (the hung connections are reset):
		// nothing of the failed upload is left (an S3 multipart upload
		// is aborted in the background), and the next Send now stores
		// its object.
		st.proxy.SetMode(testenv.Pass)
		st.proxy.Thaw()
		st.proxy.Cut()
		sfNoLeftovers(t, st, 60*time.Second, failedKey)
		stays := sfFailedRunSettled(t, st, run)
		// The next export runs on the server restarted with the default
		// stall timeout: on a busy CI machine a healthy Azurite did not
		// answer a block upload within 2 s, and the run failed again.
		e.s.Restart()
		heavyPhase(t)
		xs2 := e.sendNow(st.schID)
		sfCheckSucceeded(t, e, st, xs2, xs2.Terminal(60*time.Second), stays...)
	})
}

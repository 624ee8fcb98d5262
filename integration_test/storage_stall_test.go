package integration_test

import (
	"strings"
	"testing"
	"time"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestStorageStall: MinIO turns into a black hole in the middle of a
// multipart upload — the open connections stop forwarding either way (the
// store neither reads the part being sent nor answers), and new connections
// are accepted and never answered. With --storage-stall-timeout 2s each
// request fails after 2 s without a byte moving, is retried by the SDK and
// by the run's attempts, and the run ends FAILED (PROVIDER_UNAVAILABLE, the
// provider message naming the stall timeout, the owner mailed) within a
// bounded time instead of hanging; nothing is stored, and once the store
// answers again the failed run's multipart upload is aborted and the next
// Send now succeeds.
func TestStorageStall(t *testing.T) {
	t.Parallel()
	heavyTest(t)
	mp := testenv.StartMailpit(t)
	s := StartServer(t, "sqlite", "--smtp-url", mp.SMTPURL, "--notify-allowed-domains", "example.com",
		"--storage-stall-timeout", "2s")
	e := xfEnv{t, s}
	xfLogsOnFailure(t, s)
	e.seed(sfRows)
	st := sfS3(t, e)

	start := time.Now()
	xs := sfStartUpload(t, e, st)
	st.proxy.SetMode(testenv.Blackhole)
	st.proxy.Freeze()
	stalled := time.Now()
	end := xs.Terminal(150 * time.Second)
	took := time.Since(stalled)
	run := e.getRun(xs.RunID())
	t.Logf("run ended %v %s after the store stopped answering (%s into the run), attempt %d: %v", end.GetPhase(),
		took.Round(time.Millisecond), stalled.Sub(start).Round(time.Millisecond), run.GetAttempt(), run.GetError())
	if end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_FAILED || run.GetState() != pb.RunState_RUN_STATE_FAILED || run.GetFinishTime() == nil {
		t.Fatalf("run against a black-holed store: stream %v, run %v", end, run)
	}
	// 4 attempts, each ending on 2 s stalls (the SDK's tries included),
	// backoff between them, and the abort of the multipart upload also
	// stalling: ~40-60 s. Without the stall timeout the first request alone
	// waited 60 s for response headers, and a part stuck mid-body forever.
	if took > 100*time.Second {
		t.Errorf("the run took %s to fail after the store stopped answering, want < 100 s", took.Round(time.Second))
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
	if keys := st.objects(t); len(keys) > 0 {
		t.Errorf("objects after the failed run: %v", keys)
	}
	var running int
	if err := s.OpenDB().QueryRow("SELECT COUNT(*) FROM export_runs WHERE state IN ('QUEUED','RUNNING')").Scan(&running); err != nil {
		t.Fatal(err)
	}
	if running != 0 {
		t.Errorf("%d runs QUEUED or RUNNING after the run failed", running)
	}

	// The store answers again (the hung connections are reset): the
	// failed run's multipart upload is aborted in the background, and the
	// next Send now stores its object.
	st.proxy.SetMode(testenv.Pass)
	st.proxy.Thaw()
	st.proxy.Cut()
	sfNoLeftovers(t, st, 60*time.Second, st.key(t, run.GetObjectUri()))
	xs2 := e.sendNow(st.schID)
	sfCheckSucceeded(t, e, st, xs2, xs2.Terminal(60*time.Second))
}

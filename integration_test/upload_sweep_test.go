package integration_test

import (
	"testing"
	"time"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestPendingAbortSurvivesRestart: MinIO becomes unreachable mid-upload and
// stays so until the run has FAILED, so the run cannot abort its multipart
// upload and leaves the abort to the background. The server restarts (which
// loses what it kept in memory) while MinIO is still down; once MinIO is
// back, the restarted server's upload sweep finds the failed run's upload
// by its object key and aborts it: nothing is left in the bucket.
func TestPendingAbortSurvivesRestart(t *testing.T) {
	t.Parallel()
	// 50k rows through a -race server with no CPU slot did not reach the
	// proxy within a minute on a busy 2-core CI machine: like the storage
	// fault subtests, a server without -race, and a slot while it seeds and
	// exports (given back once the store is cut off and the test only waits).
	volumeTest(t)
	idle := heavyPhase(t)
	e, _, st := sfSetup(t, "s3")
	xs := sfStartUpload(t, e, st)
	st.strike(testenv.Refuse)
	idle()
	end := xs.Terminal(90 * time.Second)
	run := e.getRun(xs.RunID())
	if end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_FAILED || run.GetState() != pb.RunState_RUN_STATE_FAILED {
		t.Fatalf("run during the outage: stream %v, run %v", end, run)
	}
	key := st.key(t, run.GetObjectUri())
	// The abort was due and failed: the upload is still there.
	if !e.s.WaitLogs(`"msg":"cleaning up after a failed upload failed (multipart abort, removing the failed run's object, or uploading its manifest); will retry","run_id":"`+run.GetId()+`"`, 30*time.Second) {
		t.Fatal("the run did not try (and fail) to abort its upload while MinIO was down")
	}
	left := st.leftovers(t, key)
	if len(left) == 0 {
		t.Fatal("no multipart upload left while MinIO is down: the test has nothing to show")
	}
	t.Logf("left while MinIO is down: %v", left)

	e.s.Restart()
	// The restarted server tries while MinIO is still down, and fails.
	if !e.s.WaitLogs(`"msg":"upload sweep: the store did not answer; will retry","run_id":"`+run.GetId()+`"`, 60*time.Second) {
		t.Fatal("the restarted server did not look for the failed run's upload")
	}
	if got := st.leftovers(t, key); len(got) != len(left) {
		t.Fatalf("uploads changed while MinIO was unreachable: %v -> %v", left, got)
	}
	back := time.Now()
	st.proxy.SetMode(testenv.Pass)
	// The sweep retries every few seconds, backing off to 30 s.
	sfNoLeftovers(t, st, 60*time.Second, key)
	if !e.s.WaitLogs(`"msg":"upload sweep: aborted an incomplete upload left by a finished run","run_id":"`+run.GetId()+`"`, 10*time.Second) {
		t.Error("the upload is gone, but the sweep did not log aborting it")
	}
	t.Logf("upload aborted %s after MinIO came back", time.Since(back).Round(time.Millisecond))
}

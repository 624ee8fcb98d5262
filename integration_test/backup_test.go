package integration_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestBackupRestore: `auditexport backup` copies the live SQLite database;
// the copy plus master.key in a fresh data dir starts a server that decrypts
// the stored S3 credentials and exports the same bytes. The copy without
// master.key is refused at start (no new key is generated over encrypted
// credentials), naming the key id.
func TestBackupRestore(t *testing.T) {
	t.Parallel()
	s := startExportServer(t)
	seedEvents(t, s, 500)
	cutoff := time.Now().UTC()
	time.Sleep(2 * time.Millisecond)
	mc := testenv.StartMinIO(t)
	mc.CreateBucket(t, "backup")

	ctx := Ctx(s.AdminKey)
	cl := s.Clients()
	wbID, elID := savedElement(t, ctx, cl, cutoff)
	must(cl.Integrations.CreateStorageIntegration(ctx, &pb.CreateStorageIntegrationRequest{
		StorageIntegration: s3Integration("bk_s3", "s3://backup/audit/", mc)})).get(t)
	schID := createSchedule(t, ctx, cl, wbID, elID, "bk_s3", "s3://backup/audit/{run_id}.csv", pb.Format_FORMAT_CSV, pb.Compression_COMPRESSION_NONE, nil)
	export := func(s *Server) [32]byte {
		t.Helper()
		sctx, cancel := context.WithTimeout(Ctx(s.AdminKey), 2*time.Minute)
		defer cancel()
		last := checkStream(t, "SendNow", sendNow(t, sctx, s.Clients(), schID), 2)
		if last.GetPhase() != pb.ExportPhase_EXPORT_PHASE_SUCCEEDED {
			t.Fatalf("send now ended %v: %v", last.GetPhase(), last.GetError())
		}
		// The schedule says how its last run ended (gRPC and REST, Get and List).
		got := must(s.Clients().Schedules.GetSchedule(sctx, &pb.GetScheduleRequest{Id: schID})).get(t).GetSchedule().GetLastRun()
		if got.GetRunId() != last.GetRunId() || got.GetState() != pb.RunState_RUN_STATE_SUCCEEDED ||
			got.GetObjectUri() != last.GetObjectUri() || got.GetFinishTime() == nil {
			t.Errorf("GetSchedule last_run %v, want run %s SUCCEEDED at %s", got, last.GetRunId(), last.GetObjectUri())
		}
		code, body, _ := s.REST("GET", "/v1/schedules?pageSize=10", s.AdminKey, nil)
		if code != 200 || !strings.Contains(fmt.Sprint(body), last.GetRunId()) {
			t.Errorf("REST ListSchedules (%d) does not show the last run %s: %v", code, last.GetRunId(), body)
		}
		checkLastSuccessGauge(t, s, schID, got.GetFinishTime().AsTime())
		return sha256.Sum256(readObject(t, sctx, last.GetObjectUri(), mc, nil, nil))
	}
	before := export(s)

	// Online: the server keeps running (and writing) during the copy.
	backup := filepath.Join(t.TempDir(), "backup.db")
	if out, err := exec.Command(toolPath, "backup", "--data-dir", s.DataDir, "--to", backup).CombinedOutput(); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	} else if !strings.Contains(string(out), "master.key") {
		t.Errorf("backup output does not remind to keep the master key:\n%s", out)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v, want mode 0600", fi, err)
	}
	if out, err := exec.Command(toolPath, "backup", "--data-dir", s.DataDir, "--to", backup).CombinedOutput(); err == nil {
		t.Fatalf("a second backup over the same file succeeded:\n%s", out)
	}
	s.Stop()

	restoreDir := func(withKey bool) string {
		dir := t.TempDir()
		copyFile(t, backup, filepath.Join(dir, "auditexport.db"))
		if withKey {
			copyFile(t, filepath.Join(s.DataDir, "master.key"), filepath.Join(dir, "master.key"))
		}
		return dir
	}

	// Without master.key: refused, and no key file appears.
	noKey := restoreDir(false)
	cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	outb, err := exec.CommandContext(cctx, toolPath, "serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", noKey).CombinedOutput()
	out := string(outb)
	if err == nil || !strings.Contains(out, "master.key") || !strings.Contains(out, "2 stored secrets") { // the integration's credentials and the organization's signing key
		t.Fatalf("server on a backup without master.key: err %v, output:\n%s\nwant a refusal naming the key file and the credential count", err, out)
	}
	if _, err := os.Stat(filepath.Join(noKey, "master.key")); !os.IsNotExist(err) {
		t.Fatalf("a master key was generated over encrypted credentials: %v", err)
	}

	// With it: same bytes.
	dir := restoreDir(true)
	r := &Server{t: t, Backend: "sqlite", DataDir: dir, DSN: "sqlite://" + filepath.Join(dir, "auditexport.db"), AdminKey: s.AdminKey}
	r.start()
	if after := export(r); after != before {
		t.Fatalf("restored server exported sha256 %x, the original %x", after, before)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkLastSuccessGauge reads /metrics: the schedule's last-success gauge
// must be its last successful run's finish time (to the second).
func checkLastSuccessGauge(t *testing.T, s *Server, schID string, want time.Time) {
	t.Helper()
	for name, v := range scrapeMetrics(t, s) {
		if strings.HasPrefix(name, "auditexport_schedule_last_success_timestamp_seconds{") && strings.Contains(name, `schedule_id="`+schID+`"`) {
			if int64(v) != want.Unix() {
				t.Errorf("%s = %v, want %d (the run's finish time)", name, v, want.Unix())
			}
			return
		}
	}
	t.Fatalf("no last-success gauge for %s in /metrics", schID)
}

package integration_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	grpcurlOnce sync.Once
	grpcurlPath string
	grpcurlErr  error
)

// grpcurl builds the pinned grpcurl (tools/go.mod) once.
func grpcurl(t *testing.T) string {
	t.Helper()
	grpcurlOnce.Do(func() {
		grpcurlPath = filepath.Join(filepath.Dir(binPath), "grpcurl")
		cmd := exec.Command("go", "build", "-modfile=tools/go.mod", "-o", grpcurlPath, "github.com/fullstorydev/grpcurl/cmd/grpcurl")
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			grpcurlErr = err
			t.Logf("%s", out)
		}
	})
	if grpcurlErr != nil {
		t.Fatalf("building grpcurl: %v", grpcurlErr)
	}
	return grpcurlPath
}

// TestGrpcurlListDescribe: reflection lists the four services and describes them.
func TestGrpcurlListDescribe(t *testing.T) {
	s := StartServer(t, "sqlite")
	out, err := exec.Command(grpcurl(t), "-plaintext", s.GRPCAddr, "list").CombinedOutput()
	if err != nil {
		t.Fatalf("grpcurl list: %v\n%s", err, out)
	}
	for _, svc := range []string{"auditexport.v1.IntegrationService", "auditexport.v1.WorkbookService",
		"auditexport.v1.ScheduleService", "auditexport.v1.AccountService", "grpc.health.v1.Health"} {
		if !strings.Contains(string(out), svc) {
			t.Errorf("grpcurl list does not show %s:\n%s", svc, out)
		}
		if strings.HasPrefix(svc, "auditexport") {
			d, err := exec.Command(grpcurl(t), "-plaintext", s.GRPCAddr, "describe", svc).CombinedOutput()
			if err != nil || !strings.Contains(string(d), "rpc ") {
				t.Errorf("grpcurl describe %s: %v\n%s", svc, err, d)
			}
		}
	}
	d, err := exec.Command(grpcurl(t), "-plaintext", s.GRPCAddr, "describe", "auditexport.v1.Schedule").CombinedOutput()
	if err != nil || !strings.Contains(string(d), "time_zone") {
		t.Errorf("grpcurl describe auditexport.v1.Schedule: %v\n%s", err, d)
	}
}

// TestReadmeWalkthrough runs the README's walk-through block as written.
func TestReadmeWalkthrough(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	if !strings.HasPrefix(text, "# auditexport\n\n```sh\ngo run ./cmd/auditexport serve") || !strings.Contains(text[:300], "make test") {
		t.Fatal("README.md must begin with the run and test commands")
	}
	begin := strings.Index(text, "<!-- BEGIN walkthrough -->")
	end := strings.Index(text, "<!-- END walkthrough -->")
	if begin < 0 || end < begin {
		t.Fatal("README.md has no walk-through block")
	}
	block := text[begin:end]
	script := block[strings.Index(block, "```sh")+5 : strings.LastIndex(block, "```")]

	s := StartServer(t, "sqlite")
	dir := t.TempDir()
	if err := os.Symlink(grpcurl(t), filepath.Join(dir, "grpcurl")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Env = append(os.Environ(),
		"PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"AUDITEXPORT_API_KEY="+s.AdminKey, "GRPC="+s.GRPCAddr, "HTTP="+s.HTTPURL, "AUDITEXPORT_DATA_DIR="+s.DataDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walk-through failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"auditexport.v1.ScheduleService", // grpcurl list
		"SERVING",                        // health
		"integration: int_",
		`"saved":true`,
		"SCHEDULE_STATE_ACTIVE",
		`"ok": true`,                       // TestStorageIntegration
		"EXPORT_PHASE_SUCCEEDED",           // Send now
		"failures-",                        // the exported file
		"RUN_STATE_SUCCEEDED",              // run history
		"schedule.cron",                    // the field violation of the bad update
		"PAUSE_REASON_INTEGRATION_UPDATED", // schedule paused by the integration change
		"UPDATE_SCHEDULE",                  // the rejected call, read back from AUDIT_LOGS
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("walk-through output lacks %q:\n%s", want, out)
		}
	}
}

package integration_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// buildOnce builds a binary of this repository once per test binary
// (without -race: these are clients; the race detector watches the server).
type buildOnce struct {
	once sync.Once
	path string
	err  error
}

func (b *buildOnce) get(t *testing.T, name string, args ...string) string {
	t.Helper()
	b.once.Do(func() {
		b.path = filepath.Join(filepath.Dir(binPath), name)
		cmd := exec.Command("go", append(append([]string{"build"}, args[:len(args)-1]...), "-o", b.path, args[len(args)-1])...)
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatalf("building %s: %v", name, b.err)
	}
	return b.path
}

var grpcurlBuild buildOnce

// grpcurl builds the pinned grpcurl (tools/go.mod) once.
func grpcurl(t *testing.T) string {
	t.Helper()
	return grpcurlBuild.get(t, "grpcurl", "-modfile=tools/go.mod", "github.com/fullstorydev/grpcurl/cmd/grpcurl")
}

// runReadmeScript runs a README shell block under bash -euo pipefail with
// env and the tool binary on PATH, and returns its output; a failing
// script fails the test.
func runReadmeScript(t *testing.T, label, script, tool string, env []string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(tool, filepath.Join(dir, filepath.Base(tool))); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Env = append(env, "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README %s failed: %v\n%s", label, err, out)
	}
	return string(out)
}

// readmeBlock returns the only ```lang code block between the README's
// <!-- BEGIN name --> and <!-- END name --> markers.
func readmeBlock(t *testing.T, name, lang string) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	begin := strings.Index(text, "<!-- BEGIN "+name+" -->")
	end := strings.Index(text, "<!-- END "+name+" -->")
	if begin < 0 || end < begin {
		t.Fatalf("README.md has no %s block", name)
	}
	block := text[begin:end]
	if strings.Count(block, "```"+lang+"\n") != 1 {
		t.Fatalf("the %s block of README.md must hold exactly one ```%s block", name, lang)
	}
	start := strings.Index(block, "```"+lang+"\n") + len("```"+lang+"\n")
	return block[start : start+strings.Index(block[start:], "```")]
}

// TestGrpcurlListDescribe: reflection lists the four services and describes them.
func TestGrpcurlListDescribe(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	if !strings.HasPrefix(text, "# auditexport\n\n```sh\ngo run ./cmd/auditexport serve") || !strings.Contains(text[:300], "make test") {
		t.Fatal("README.md must begin with the run and test commands")
	}
	script := readmeBlock(t, "walkthrough", "sh")

	s := StartServer(t, "sqlite")
	out := runReadmeScript(t, "walk-through", script, grpcurl(t), append(os.Environ(),
		"AUDITEXPORT_API_KEY="+s.AdminKey, "GRPC="+s.GRPCAddr, "HTTP="+s.HTTPURL, "AUDITEXPORT_DATA_DIR="+s.DataDir))
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
		if !strings.Contains(out, want) {
			t.Errorf("walk-through output lacks %q:\n%s", want, out)
		}
	}
}

package integration_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// tsClientDir returns clients/ts with its pinned npm packages installed (by
// scripts/install-test-tools.sh). Missing Node or packages fail in CI and skip
// locally.
func tsClientDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(repoRoot, "clients", "ts")
	missing := ""
	if _, err := exec.LookPath("node"); err != nil {
		missing = "node (Node.js 20+) on PATH"
	} else if _, err := os.Stat(filepath.Join(dir, "node_modules", "typescript", "bin", "tsc")); err != nil {
		missing = "clients/ts/node_modules"
	}
	if missing != "" {
		msg := fmt.Sprintf("TypeScript client tools are not installed (%s missing); run scripts/install-test-tools.sh", missing)
		if os.Getenv("CI") != "" {
			t.Fatalf("%s (CI is set, so this is a failure, not a skip)", msg)
		}
		t.Skip(msg)
	}
	return dir
}

// runNode runs node with args in dir and returns its combined output; a
// failure is fatal and shows the output.
func runNode(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestTSClientGeneratedFresh regenerates clients/ts/openapi.json and
// clients/ts/src/schema.ts from gen/openapi/auditexport.swagger.json and
// compares them with the committed files (make check-generated covers only gen/
// and ent/).
func TestTSClientGeneratedFresh(t *testing.T) {
	t.Parallel()
	dir := tsClientDir(t)
	out := t.TempDir()
	runNode(t, dir, nil, "scripts/generate.mjs", "--out", out)
	for _, rel := range []string{"openapi.json", filepath.Join("src", "schema.ts")} {
		want, err := os.ReadFile(filepath.Join(out, rel))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("clients/ts/%s is stale (differs from a regeneration at line %d); run `npm run generate` in clients/ts and commit",
				rel, firstDiffLine(got, want))
		}
	}
}

func firstDiffLine(a, b []byte) int {
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := 0; i < len(la) && i < len(lb); i++ {
		if la[i] != lb[i] {
			return i + 1
		}
	}
	return min(len(la), len(lb)) + 1
}

// TestTSClientE2E type-checks and compiles the TypeScript client and its tests
// (strict tsc) and runs them with node's test runner against a real server:
// the end-to-end test creates an integration, a workbook and a schedule
// through the gateway and follows Send now to SUCCEEDED.
func TestTSClientE2E(t *testing.T) {
	t.Parallel()
	dir := tsClientDir(t)
	s := StartServer(t, "sqlite")

	// Compile into a private directory under clients/ts/dist (inside the
	// package, so that node resolves its node_modules), not into dist itself:
	// parallel runs must not share output.
	if err := os.MkdirAll(filepath.Join(dir, "dist"), 0o755); err != nil {
		t.Fatal(err)
	}
	build, err := os.MkdirTemp(filepath.Join(dir, "dist"), "it-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(build) })
	runNode(t, dir, nil, filepath.Join("node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json", "--outDir", build)

	// Test files by name: from Node 21 on, a directory argument to --test
	// is loaded as a module instead of searched.
	tests, _ := filepath.Glob(filepath.Join(build, "test", "*.test.js"))
	if len(tests) < 2 {
		t.Fatalf("compiled tests %v: want the NDJSON and the e2e test", tests)
	}
	out := runNode(t, dir, []string{
		"AUDITEXPORT_URL=" + s.HTTPURL,
		"AUDITEXPORT_API_KEY=" + s.AdminKey,
		"AUDITEXPORT_DATA_DIR=" + s.DataDir,
		"AUDITEXPORT_TS_E2E_REQUIRED=1",
	}, append([]string{"--test", "--test-reporter=tap"}, tests...)...)

	e2e := regexp.MustCompile(`(?m)^ok \d+ - e2e: .*$`)
	line := e2e.FindString(out)
	switch {
	case line == "":
		t.Errorf("node output does not report the e2e test as passed:\n%s", out)
	case strings.Contains(line, "# SKIP") || strings.Contains(line, "# TODO"):
		t.Errorf("the e2e test did not run: %s\n%s", line, out)
	}
	if !regexp.MustCompile(`(?m)^ok \d+ - ndjson: `).MatchString(out) {
		t.Errorf("node output does not show the NDJSON unit tests:\n%s", out)
	}
	for _, want := range []string{"\n# fail 0\n", "\n# skipped 0\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("node output lacks %q:\n%s", want, out)
		}
	}
	if m := regexp.MustCompile(`(?m)^# pass (\d+)$`).FindStringSubmatch(out); m == nil || m[1] == "0" {
		t.Errorf("node output reports no passed tests:\n%s", out)
	}

	files, _ := filepath.Glob(filepath.Join(s.LocalDir("", "ts"), "audit-*.csv.gz"))
	if len(files) != 1 {
		t.Errorf("want one exported file under %s, got %v", s.LocalDir("", "ts"), files)
	}
	if testing.Verbose() {
		t.Logf("node test output:\n%s", out)
	}
}

package integration_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/auditexport/auditexport/internal/console"
	"github.com/auditexport/auditexport/internal/testenv"
)

// consoleDir returns web/console with its pinned npm packages installed (by
// scripts/install-test-tools.sh, npm ci from web/console/package-lock.json)
// and clients/ts's (the console bundles clients/ts/src). Missing Node or
// packages fail in CI and skip locally.
func consoleDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(repoRoot, "web", "console")
	missing := ""
	if _, err := exec.LookPath("node"); err != nil {
		missing = "node (Node.js 20+) on PATH"
	} else {
		for _, p := range []string{
			filepath.Join(dir, "node_modules", "esbuild", "package.json"),
			filepath.Join(dir, "node_modules", "playwright-core", "package.json"),
			filepath.Join(dir, "node_modules", "axe-core", "axe.min.js"),
			filepath.Join(repoRoot, "clients", "ts", "node_modules", "openapi-fetch", "package.json"),
		} {
			if _, err := os.Stat(p); err != nil {
				missing = p
				break
			}
		}
	}
	if missing != "" {
		msg := fmt.Sprintf("web console tools are not installed (%s missing); run %s", missing, testenv.InstallCommand)
		if os.Getenv("CI") != "" {
			t.Fatalf("%s (CI is set, so this is a failure, not a skip)", msg)
		}
		t.Skip(msg)
	}
	return dir
}

// TestConsoleBuildFresh type-checks the console (strict tsc) and rebuilds it
// into a temporary directory with the pinned esbuild, then compares every
// file with the committed internal/console/dist (embedded in the server):
// the committed build is what the sources build to.
func TestConsoleBuildFresh(t *testing.T) {
	t.Parallel()
	dir := consoleDir(t)
	runNode(t, dir, nil, filepath.Join("node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json")
	out := t.TempDir()
	runNode(t, dir, nil, "build.mjs", "--out", out)
	committed := filepath.Join(repoRoot, "internal", "console", "dist")
	want := treeFiles(t, out)
	got := treeFiles(t, committed)
	for name, b := range want {
		if c, ok := got[name]; !ok {
			t.Errorf("internal/console/dist/%s is missing", name)
		} else if !bytes.Equal(c, b) {
			t.Errorf("internal/console/dist/%s differs from a rebuild (line %d)", name, firstDiffLine(c, b))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("internal/console/dist/%s is not produced by the build any more", name)
		}
	}
	if t.Failed() {
		t.Log("the committed console build is stale: run `npm run build` in web/console and commit internal/console/dist")
	}
}

func treeFiles(t *testing.T, root string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

const consoleTitle = "<title>auditexport console</title>"

// TestConsoleServing checks how the server serves the console: index.html
// at / and at every client-side route, hashed assets cached for good, the
// security headers, and that the server's own paths are never shadowed.
func TestConsoleServing(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite")
	for _, p := range []string{"/", "/integrations", "/workbooks/wb_x/schedules/new", "/no/such/route"} {
		code, h, body := httpGet(t, s.HTTPURL+p)
		if code != http.StatusOK || !strings.Contains(string(body), consoleTitle) {
			t.Fatalf("GET %s: %d %.200s", p, code, body)
		}
		if h.Get("Content-Security-Policy") != console.ContentSecurityPolicy || h.Get("X-Frame-Options") != "DENY" ||
			!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("Cache-Control") != "no-cache" {
			t.Errorf("GET %s headers: %v", p, h)
		}
		if strings.Contains(string(body), "<script>") || strings.Contains(string(body), "style=") {
			t.Errorf("GET %s: inline script or style in index.html", p)
		}
	}
	_, _, index := httpGet(t, s.HTTPURL+"/")
	assets := 0
	for _, part := range strings.Split(string(index), `"`) {
		if !strings.HasPrefix(part, "/assets/") {
			continue
		}
		assets++
		code, h, _ := httpGet(t, s.HTTPURL+part)
		if code != http.StatusOK || h.Get("Cache-Control") != "public, max-age=31536000, immutable" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: %d %v", part, code, h)
		}
	}
	if assets != 2 {
		t.Errorf("index.html refers to %d assets, want the script and the stylesheet", assets)
	}
	if code, _, _ := httpGet(t, s.HTTPURL+"/assets/main-NOPE.js"); code != http.StatusNotFound {
		t.Errorf("unknown asset: %d, want 404", code)
	}
	// The server's own paths keep their answers.
	for p, want := range map[string]string{
		"/healthz": `"SERVING"`, "/readyz": `"READY"`, "/openapi.json": `"openapi"`, "/docs": "API reference",
		"/metrics": "# HELP", "/v1/users/me": `"code"`, "/v1/nope": `"code"`,
	} {
		_, _, body := httpGet(t, s.HTTPURL+p)
		if !strings.Contains(string(body), want) || strings.Contains(string(body), consoleTitle) {
			t.Errorf("GET %s: %.200s (want %s, not the console)", p, body, want)
		}
	}
	for _, p := range []string{"/docs/nope", "/healthz/x", "/metrics/x"} {
		code, _, body := httpGet(t, s.HTTPURL+p)
		if code != http.StatusNotFound || strings.Contains(string(body), consoleTitle) {
			t.Errorf("GET %s: %d %.100s, want 404 and not the console", p, code, body)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, s.HTTPURL+"/integrations", nil)
	resp, err := testenv.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /integrations: %d, want 405", resp.StatusCode)
	}
}

// TestConsoleBrowser drives the console in headless Chromium (npm
// playwright-core over Debian's /usr/bin/chromium) against a real server on
// SQLite and a real MinIO: web/console/test/e2e.mjs walks the acceptance of
// issue 14 (sign in, integrations and Test, explore and save, a schedule with
// five previewed run times typed with the keyboard only, Send now to 100%,
// a reload during a slow Send now, a provider error in the run history, a
// VIEWER refused admin pages), runs axe-core on every page (no serious or
// critical violation), checks that no request leaves the server's origin and
// that the CSP reports nothing, and takes a screenshot of every page (into
// docs/console/ with AUDITEXPORT_UPDATE_SCREENSHOTS=1).
func TestConsoleBrowser(t *testing.T) {
	t.Parallel()
	heavyTest(t)
	dir := consoleDir(t)
	chromium := chromiumPath(t)
	s := StartServer(t, "sqlite")
	m := testenv.StartMinIO(t)
	m.CreateBucket(t, "console")
	// The slow integration reaches the same MinIO through a proxy limited to
	// 400 KB/s, so its Send now lasts long enough to reload the page during it.
	slow, slowEndpoint := sfProxied(t, m.Endpoint)
	slow.SetBandwidth(400 << 10)
	seedEvents(t, s, 15000)

	// Screenshots are taken on every run; they replace the committed ones in
	// docs/console/ only when asked (a test run leaves the checkout as it
	// found it).
	shots := t.TempDir()
	if os.Getenv("AUDITEXPORT_UPDATE_SCREENSHOTS") != "" {
		shots = filepath.Join(repoRoot, "docs", "console")
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Alone it takes ~2 minutes; the bound leaves room for a loaded CI machine.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "test/e2e.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"CONSOLE_URL="+s.HTTPURL,
		"CONSOLE_ADMIN_KEY="+s.AdminKey,
		"CONSOLE_CHROMIUM="+chromium,
		"CONSOLE_S3_ENDPOINT="+m.Endpoint,
		"CONSOLE_S3_SLOW_ENDPOINT="+slowEndpoint,
		"CONSOLE_S3_ACCESS_KEY="+m.AccessKey,
		"CONSOLE_S3_SECRET_KEY="+m.SecretKey,
		"CONSOLE_S3_REGION="+m.Region,
		"CONSOLE_SCREENSHOTS="+shots,
	)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("e2e.mjs output:\n%s", out)
	if ctx.Err() != nil {
		t.Fatalf("e2e.mjs did not finish in time")
	}
	if err != nil {
		t.Fatalf("e2e.mjs: %v", err)
	}
}

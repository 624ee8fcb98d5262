package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/auditexport/auditexport/internal/apidoc"
	"github.com/auditexport/auditexport/internal/testenv"
)

// needTool returns path when it exists; otherwise the test fails under CI
// and is skipped locally, naming the install command.
func needTool(t *testing.T, path, what string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		msg := fmt.Sprintf("%s is not installed (%s missing); run %s", what, path, testenv.InstallCommand)
		if os.Getenv("CI") != "" {
			t.Fatalf("%s (CI is set, so this is a failure, not a skip)", msg)
		}
		t.Skip(msg)
	}
	return path
}

// chromiumPath returns the headless browser of the /docs tests: chromium on
// PATH, else Debian's /usr/bin/chromium (scripts/install-test-tools.sh).
func chromiumPath(t *testing.T) string {
	t.Helper()
	chromium := "/usr/bin/chromium"
	if p, err := exec.LookPath("chromium"); err == nil {
		chromium = p
	}
	return needTool(t, chromium, "Chromium (Debian package chromium)")
}

// httpGet returns the status, headers and body of GET url.
func httpGet(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := testenv.HTTP.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

// openAPIOperation is an operation of the served document.
type openAPIOperation struct {
	Method, Path, OperationID, Summary string
	Tags                               []string
}

func servedOperations(t *testing.T, doc []byte) []openAPIOperation {
	t.Helper()
	var d struct {
		Paths map[string]map[string]struct {
			OperationID string   `json:"operationId"`
			Summary     string   `json:"summary"`
			Tags        []string `json:"tags"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	var ops []openAPIOperation
	for p, item := range d.Paths {
		for m, op := range item {
			ops = append(ops, openAPIOperation{m, p, op.OperationID, op.Summary, op.Tags})
		}
	}
	return ops
}

// TestOpenAPILint lints the document a running server serves at
// /openapi.json with the pinned Redocly CLI's recommended rules: any error
// fails (warnings are logged; docs/api.md explains the ones left, if any).
func TestOpenAPILint(t *testing.T) {
	t.Parallel()
	cli := needTool(t, filepath.Join(repoRoot, ".tools", "node", "node_modules", "@redocly", "cli", "bin", "cli.js"), "Redocly CLI (@redocly/cli)")
	if _, err := exec.LookPath("node"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("node (Node.js 20+) is not on PATH: %v", err)
		}
		t.Skipf("node (Node.js 20+) is not on PATH: %v", err)
	}
	s := StartServer(t, "sqlite")
	code, hdr, doc := httpGet(t, s.HTTPURL+"/openapi.json")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /openapi.json: %d %s", code, hdr.Get("Content-Type"))
	}
	var head struct {
		OpenAPI string `json:"openapi"`
		Info    struct{ Title, Version string }
	}
	if err := json.Unmarshal(doc, &head); err != nil {
		t.Fatal(err)
	}
	if head.OpenAPI != "3.1.0" || head.Info.Title != "auditexport API" || head.Info.Version == "" || head.Info.Version == apidoc.DevVersion {
		t.Errorf("openapi %q, info %+v: want 3.1.0, auditexport API and the server's version", head.OpenAPI, head.Info)
	}

	dir := t.TempDir()
	docPath := filepath.Join(dir, "openapi.json")
	config := filepath.Join(dir, "redocly.yaml")
	if err := os.WriteFile(docPath, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, []byte("extends:\n  - recommended\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", cli, "lint", docPath, "--config", config, "--format", "json", "--max-problems", "10000")
	cmd.Dir = dir
	// No telemetry, no update check (nothing may leave the machine).
	cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true", "NO_COLOR=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var report struct {
		Totals   struct{ Errors, Warnings, Ignored int }
		Problems []struct {
			RuleID   string `json:"ruleId"`
			Severity string
			Message  string
			Location []struct {
				Pointer string
			}
		}
	}
	if jerr := json.Unmarshal(out, &report); jerr != nil {
		t.Fatalf("redocly lint: %v (exit: %v)\nstdout:\n%s\nstderr:\n%s", jerr, err, out, stderr.String())
	}
	for _, p := range report.Problems {
		where := ""
		if len(p.Location) > 0 {
			where = p.Location[0].Pointer
		}
		line := fmt.Sprintf("%s %s: %s (%s)", p.Severity, p.RuleID, p.Message, where)
		if p.Severity == "error" {
			t.Error(line)
		} else {
			t.Log(line)
		}
	}
	if report.Totals.Errors > 0 || (err != nil && report.Totals.Errors == 0) {
		t.Errorf("redocly lint: %d errors, %d warnings (exit: %v)\n%s", report.Totals.Errors, report.Totals.Warnings, err, stderr.String())
	}
	t.Logf("redocly lint (recommended): %d errors, %d warnings", report.Totals.Errors, report.Totals.Warnings)

	// The unique path templates are documentation only: the REST routes the
	// generator named {schedule.id} answer as before.
	code, me, _ := s.REST("GET", "/v1/users/me", s.AdminKey, nil)
	id, email := getString(me, "user", "id"), getString(me, "user", "email")
	if code != 200 || id == "" {
		t.Fatalf("GET /v1/users/me: %d %v", code, me)
	}
	if code, body, _ := s.REST("PATCH", "/v1/users/"+id+"?updateMask=email", s.AdminKey, map[string]any{"email": email}); code != 200 {
		t.Errorf("PATCH /v1/users/%s (documented as /v1/users/{id}): %d %v", id, code, body)
	}
}

// TestAPIDocsBrowser loads /docs in headless Chromium (Debian's package,
// installed by scripts/install-test-tools.sh) and finds every operation of
// the four services in the rendered page, with no Content-Security-Policy
// violation logged on the way.
func TestAPIDocsBrowser(t *testing.T) {
	t.Parallel()
	heavyTest(t)
	chromium := chromiumPath(t)
	s := StartServer(t, "sqlite")

	code, hdr, page := httpGet(t, s.HTTPURL+"/docs")
	if code != 200 || hdr.Get("Content-Security-Policy") != apidoc.ContentSecurityPolicy {
		t.Fatalf("GET /docs: %d, CSP %q", code, hdr.Get("Content-Security-Policy"))
	}
	if strings.Contains(string(page), "https://") || strings.Contains(string(page), "<script>") {
		t.Errorf("/docs loads something from elsewhere or has an inline script:\n%s", page)
	}
	_, _, doc := httpGet(t, s.HTTPURL+"/openapi.json")
	ops := servedOperations(t, doc)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// --virtual-time-budget: the DOM is dumped once the page went idle for
	// that much virtual time (its fetch of /openapi.json and the render).
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-dev-shm-usage", "--no-first-run", "--user-data-dir="+t.TempDir(),
		"--enable-logging=stderr", "--v=0", "--virtual-time-budget=30000",
		"--dump-dom", s.HTTPURL+"/docs")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, ":CONSOLE") && (strings.Contains(line, "Content Security Policy") || strings.Contains(line, "Refused to")) {
			t.Errorf("console: %s", line)
		}
	}
	text := domText(string(dom))
	if !strings.Contains(text, "auditexport API") {
		t.Fatalf("the page did not render the document; DOM text:\n%.3000s", text)
	}
	for _, want := range []string{"Authentication", "Bearer"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q (the bearer API-key form) in the page", want)
		}
	}
	perService := map[string]int{}
	for _, op := range ops {
		if len(op.Tags) == 0 {
			t.Errorf("%s %s has no tag", op.Method, op.Path)
			continue
		}
		// Scalar shows the summary without a trailing period in the sidebar.
		if sum := strings.TrimSuffix(op.Summary, "."); !strings.Contains(text, sum) {
			t.Errorf("%s (%s %s): summary %q not in the rendered page", op.OperationID, op.Method, op.Path, sum)
			continue
		}
		perService[op.Tags[0]]++
	}
	for _, svc := range []string{"IntegrationService", "WorkbookService", "ScheduleService", "AccountService"} {
		if perService[svc] == 0 || !strings.Contains(text, svc) {
			t.Errorf("%s: %d operations found in the page", svc, perService[svc])
		}
	}
	t.Logf("operations found in the rendered page: %v", perService)
}

// TestAPIDocsTryIt drives /docs in headless Chromium (chromedp) as a user
// would: types an API key into the page's Authentication form, opens
// "Test Request" on the first operation (GET /v1/apiKeys) and sends it; the
// server must see the call authenticated (ListApiKeys answered OK for the
// key's user), i.e. "try it" sends the bearer key, to this server, with no
// proxy in between.
func TestAPIDocsTryIt(t *testing.T) {
	t.Parallel()
	heavyTest(t)
	chromium := chromiumPath(t)
	s := StartServer(t, "sqlite")

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	token := `input[placeholder="Token"]`
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.HTTPURL+"/docs"),
		chromedp.WaitVisible(token),
		chromedp.SendKeys(token, s.AdminKey),
	); err != nil {
		t.Fatalf("the Authentication form of /docs: %v", err)
	}
	// clickButton clicks the first visible button whose text contains text,
	// retrying while the page renders.
	clickButton := func(text string) {
		t.Helper()
		js := fmt.Sprintf(`(() => {
			const b = [...document.querySelectorAll("button")].find(b => b.offsetParent !== null && b.textContent.includes(%q));
			if (b) b.click();
			return !!b;
		})()`, text)
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
			if err != nil {
				t.Fatalf("click %q: %v", text, err)
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no visible %q button in /docs", text)
			}
		}
	}
	clickButton("Test Request")
	sent := `"method":"ListApiKeys","code":"OK"`
	for i := 0; i < 10 && !strings.Contains(s.Logs(), sent); i++ {
		clickButton("Send")
		s.WaitLogs(sent, 3*time.Second)
	}
	if !strings.Contains(s.Logs(), sent) {
		t.Fatalf("no authenticated ListApiKeys call reached the server; its log:\n%s", s.Logs())
	}
}

var (
	domComment = regexp.MustCompile(`(?s)<!--.*?-->|<wbr>`)
	domSkip    = regexp.MustCompile(`(?s)<(style|script|svg)\b.*?</(style|script|svg)>`)
	domTag     = regexp.MustCompile(`<[^>]*>`)
)

// domText is the text of a DOM dump: inline break hints dropped, tags as
// spaces, entities decoded, whitespace collapsed.
func domText(dom string) string {
	dom = domComment.ReplaceAllString(dom, "")
	dom = domSkip.ReplaceAllString(dom, " ")
	dom = domTag.ReplaceAllString(dom, " ")
	return strings.Join(strings.Fields(html.UnescapeString(dom)), " ")
}

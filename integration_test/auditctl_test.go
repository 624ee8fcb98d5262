package integration_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var auditctlBuild buildOnce

// auditctlBin builds cmd/auditctl once.
func auditctlBin(t *testing.T) string {
	t.Helper()
	return auditctlBuild.get(t, "auditctl", "./cmd/auditctl")
}

// ctl runs auditctl as a subprocess against one server.
type ctl struct {
	t   *testing.T
	s   *Server
	env []string
}

// newCtl points auditctl at s through the environment, with an empty
// XDG_CONFIG_HOME so a developer's own config file cannot leak in.
func newCtl(t *testing.T, s *Server) *ctl {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AUDITEXPORT_") && !strings.HasPrefix(kv, "AUDITCTL_") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			env = append(env, kv)
		}
	}
	env = append(env, "XDG_CONFIG_HOME="+t.TempDir(), "AUDITEXPORT_ADDR="+s.GRPCAddr, "AUDITEXPORT_API_KEY="+s.AdminKey)
	return &ctl{t: t, s: s, env: env}
}

// with returns a copy whose environment has kv set (an empty value unsets).
func (c *ctl) with(kv ...string) *ctl {
	n := &ctl{t: c.t, s: c.s}
	for _, e := range c.env {
		keep := true
		for _, o := range kv {
			name, _, _ := strings.Cut(o, "=")
			if strings.HasPrefix(e, name+"=") {
				keep = false
			}
		}
		if keep {
			n.env = append(n.env, e)
		}
	}
	for _, o := range kv {
		if !strings.HasSuffix(o, "=") {
			n.env = append(n.env, o)
		}
	}
	return n
}

type ctlResult struct {
	stdout, stderr string
	code           int
}

func (c *ctl) run(stdin string, args ...string) ctlResult {
	c.t.Helper()
	cmd := exec.Command(auditctlBin(c.t), args...)
	cmd.Env = c.env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		c.t.Fatalf("auditctl %s: %v", strings.Join(args, " "), err)
	}
	r := ctlResult{out.String(), errb.String(), cmd.ProcessState.ExitCode()}
	// Whatever happened, no Go internals reach the user.
	for _, bad := range []string{"rpc error:", "goroutine ", "panic:", c.s.AdminKey} {
		if strings.Contains(r.stdout+r.stderr, bad) {
			c.t.Errorf("auditctl %s printed %q:\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), bad, r.stdout, r.stderr)
		}
	}
	return r
}

// ok runs a command that must succeed and returns its stdout.
func (c *ctl) ok(args ...string) string {
	c.t.Helper()
	r := c.run("", args...)
	if r.code != 0 {
		c.t.Fatalf("auditctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs a command that must exit with code and returns stdout+stderr.
func (c *ctl) fails(code int, args ...string) string {
	c.t.Helper()
	r := c.run("", args...)
	if r.code != code {
		c.t.Fatalf("auditctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r.stdout + r.stderr
}

func (c *ctl) json(args ...string) map[string]any {
	c.t.Helper()
	out := c.ok(append(args, "-o", "json")...)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		c.t.Fatalf("auditctl %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
	return m
}

func (c *ctl) value(path string, args ...string) string {
	c.t.Helper()
	return strings.TrimSpace(c.ok(append(args, "-o", "value="+path)...))
}

func mustContain(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, out)
		}
	}
}

// tableRow finds the line of a table that starts with id and splits it.
func tableRow(t *testing.T, out, id string) []string {
	t.Helper()
	for line := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(line, id+" ") {
			return strings.Fields(line)
		}
	}
	t.Fatalf("no table row for %s:\n%s", id, out)
	return nil
}

var progressLine = regexp.MustCompile(`^(QUEUED|QUERYING|UPLOADING|FINALIZING|SUCCEEDED|FAILED|CANCELED|SKIPPED) +rows=\d+ bytes=\d+`)

// TestAuditctlFlow drives the whole product through the CLI binary.
func TestAuditctlFlow(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite")
	c := newCtl(t, s)
	exports := s.LocalDir("", "ctl")
	dest := "file://" + exports + "/"

	mustContain(t, "users me", c.ok("users", "me"), "admin@example.com", "ADMIN")

	// Integration: create (table output), list as JSON, test, credentials.
	out := c.ok("integrations", "create", "--name", "ctl_local", "--provider", "local", "--destination", dest)
	mustContain(t, "integrations create", out, "ctl_local", "LOCAL", dest)
	ints := c.json("integrations", "list")
	list, _ := ints["storageIntegrations"].([]any)
	if len(list) != 1 {
		t.Fatalf("integrations list -o json: %v", ints)
	}
	in := list[0].(map[string]any)
	intID, _ := in["id"].(string)
	if !strings.HasPrefix(intID, "int_") || in["provider"] != "PROVIDER_LOCAL" || in["destination"] != dest {
		t.Fatalf("integration as JSON: %v", in)
	}
	mustContain(t, "integrations test", c.ok("integrations", "test", intID), "ok", "true", "probeUri")
	mustContain(t, "integrations credentials", c.ok("integrations", "credentials", intID), "ctl_local")
	// A duplicate name is refused with the field and the reason.
	dup := c.fails(1, "integrations", "create", "--name", "ctl_local", "--provider", "local", "--destination", dest)
	mustContain(t, "duplicate integration", dup, "Error: ALREADY_EXISTS", "storage_integration.name: ")
	// Credentials are never taken from a flag value.
	mustContain(t, "s3 without secret", c.fails(2, "integrations", "create", "--name", "s3x", "--provider", "s3",
		"--destination", "s3://bucket/p/", "--access-key-id", "AK"), "--secret-access-key-file")

	// Workbook: explore, save as, narrow the element, query it.
	ex := c.json("workbooks", "explore")
	wbID := getString(ex, "workbook", "id")
	elements, _ := getPath(ex, "workbook", "elements").([]any)
	if !strings.HasPrefix(wbID, "wb_") || len(elements) != 1 || getPath(ex, "workbook", "saved") != nil {
		t.Fatalf("workbooks explore -o json: %v", ex)
	}
	elID, _ := elements[0].(map[string]any)["id"].(string)
	mustContain(t, "save-as", c.ok("workbooks", "save-as", wbID, "--name", "CLI export", "--folder", "it"),
		"saved", "true", "CLI export")
	q := c.json("workbooks", "query", wbID, elID, "--page-size", "3")
	rows, _ := q["rows"].([]any)
	if len(rows) != 3 || !strings.Contains(js(q["columns"]), "EVENT_TYPE") {
		t.Fatalf("workbooks query -o json: %v", q)
	}
	mustContain(t, "query table", c.ok("workbooks", "query", wbID, "--page-size", "2"), "EVENT_ID", "REQUEST_TIME", "(2 of ")
	upd := c.ok("workbooks", "update", wbID, "--element-name", "Everything", "--sort", "REQUEST_TIME:desc", "--last", "720h")
	mustContain(t, "workbooks update", upd, "elements[0].name", "Everything", "elements[0].sort[0].descending", "720h0m0s")

	// Schedule: create from flags (format and compression from the name).
	schID := c.value("id", "schedules", "create", "--workbook", wbID, "--name", "cli daily",
		"--integration", "ctl_local", "--uri", dest+"{yyyy}/audit-{date}.csv.gz",
		"--cron", "0 6 * * *", "--time-zone", "Europe/Berlin")
	if !strings.HasPrefix(schID, "sch_") {
		t.Fatalf("schedules create -o value=id: %q", schID)
	}
	table := c.ok("schedules", "list")
	mustContain(t, "schedules list", table, "ID", "NAME", "STATE", "CRON", "TIME_ZONE")
	row := strings.Join(tableRow(t, table, schID), " ")
	mustContain(t, "schedule row", row, "ACTIVE", "0 6 * * *", "Europe/Berlin", "CSV", "GZIP")
	sl := c.json("schedules", "list", "--workbook", wbID)
	scheds, _ := sl["schedules"].([]any)
	if len(scheds) != 1 {
		t.Fatalf("schedules list -o json: %v", sl)
	}
	sc := scheds[0].(map[string]any)
	for k, want := range map[string]string{"id": schID, "elementId": elID, "format": "FORMAT_CSV", "compression": "COMPRESSION_GZIP",
		"timeZone": "Europe/Berlin", "cron": "0 6 * * *", "state": "SCHEDULE_STATE_ACTIVE"} {
		if sc[k] != want {
			t.Errorf("schedule JSON %s = %v, want %q", k, sc[k], want)
		}
	}
	if getString(sc, "destination", "cloudStorage", "storageIntegrationName") != "ctl_local" {
		t.Errorf("schedule JSON destination: %v", sc["destination"])
	}

	// Send now, not on a terminal: plain progress lines, then the summary.
	out = c.ok("schedules", "send-now", schID)
	if strings.Contains(out, "\r") {
		t.Errorf("send-now into a pipe drew a bar:\n%q", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var progress []string
	for _, l := range lines {
		if progressLine.MatchString(l) {
			progress = append(progress, l)
		}
	}
	if len(progress) < 2 || !strings.HasPrefix(progress[len(progress)-1], "SUCCEEDED") {
		t.Fatalf("send-now progress lines:\n%s", out)
	}
	m := regexp.MustCompile(`(?m)^SUCCEEDED (run_[a-z0-9]+): (\d+) rows`).FindStringSubmatch(out)
	um := regexp.MustCompile(`(?m)^object: file://(\S+)$`).FindStringSubmatch(out)
	if m == nil || um == nil {
		t.Fatalf("send-now summary:\n%s", out)
	}
	runID := m[1]
	if !strings.HasPrefix(um[1], exports+"/") || !strings.HasSuffix(um[1], ".csv.gz") {
		t.Errorf("exported to %s, want under %s", um[1], exports)
	}
	f, err := os.Open(um[1])
	if err != nil {
		t.Fatalf("exported file: %v", err)
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("exported file is not gzip: %v", err)
	}
	csv, _ := io.ReadAll(zr)
	f.Close()
	if !strings.HasPrefix(string(csv), "EVENT_ID,") || strings.Count(string(csv), "\n")-1 != atoi(t, m[2]) {
		t.Errorf("exported CSV (%s rows reported): %.200q", m[2], csv)
	}

	// Run history.
	mustContain(t, "runs list", strings.Join(tableRow(t, c.ok("runs", "list", schID), runID), " "), "SEND_NOW", "SUCCEEDED", m[2])
	run := c.json("runs", "get", runID)
	if getString(run, "run", "state") != "RUN_STATE_SUCCEEDED" || getString(run, "run", "objectUri") != "file://"+um[1] ||
		getString(run, "run", "rows") != m[2] {
		t.Errorf("runs get -o json: %v", run)
	}
	mustContain(t, "runs watch (finished run)", c.ok("runs", "watch", runID), "SUCCEEDED "+runID)

	// A bad update names the field; a bad enum is a usage error.
	bad := c.fails(1, "schedules", "update", schID, "--cron", "0 25 * * *")
	mustContain(t, "bad cron", bad, "Error: INVALID_ARGUMENT", "\nschedule.cron: ")
	mustContain(t, "bad format", c.fails(2, "schedules", "update", schID, "--format", "xml"), "--format", "csv, jsonl, parquet")
	mustContain(t, "not found", c.fails(1, "schedules", "get", "sch_01nonexistent00000000000000"), "Error: NOT_FOUND")
	// A good update changes only what was given.
	upd = c.ok("schedules", "update", schID, "--cron", "30 7 * * 1-5")
	mustContain(t, "schedules update", upd, "30 7 * * 1-5", "Europe/Berlin", "GZIP")

	// Pause and resume.
	mustContain(t, "pause", c.ok("schedules", "pause", schID), "PAUSED", "USER")
	if st := c.value("state", "schedules", "resume", schID); st != "SCHEDULE_STATE_ACTIVE" {
		t.Errorf("resume -o value=state: %q", st)
	}

	// A run that fails (a file stands where a directory must be created):
	// exit status 1 with the run's error.
	if err := os.WriteFile(filepath.Join(exports, "blocker"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	failID := c.value("id", "schedules", "create", "--workbook", wbID, "--name", "cli failing",
		"--integration", "ctl_local", "--uri", dest+"blocker/x.csv", "--cron", "0 6 * * *")
	failed := c.fails(1, "schedules", "send-now", failID)
	mustContain(t, "failed send-now", failed, "FAILED run_", "error: ")

	// Users and API keys: the new key works until it is revoked.
	userID := c.value("id", "users", "create", "--email", "cli-bot@example.com", "--account-type", "creator")
	mustContain(t, "users grant", c.ok("users", "grant", userID), "con_audit_logs")
	key := c.json("keys", "create", "--user", userID, "--name", "ci")
	keyID, secret := getString(key, "apiKey", "id"), getString(key, "secret")
	if !strings.HasPrefix(keyID, "key_") || !strings.HasPrefix(secret, "aek_") {
		t.Fatalf("keys create -o json: %v", key)
	}
	mustContain(t, "keys list", strings.Join(tableRow(t, c.ok("keys", "list", "--user", userID), keyID), " "), "ci", userID)
	bot := c.with("AUDITEXPORT_API_KEY=" + secret)
	mustContain(t, "users me as the bot", bot.ok("users", "me"), "cli-bot@example.com", "CREATOR")
	mustContain(t, "keys revoke", c.ok("keys", "revoke", keyID), "revokeTime")
	mustContain(t, "revoked key", bot.fails(1, "users", "me"), "Error: UNAUTHENTICATED")
	mustContain(t, "users revoke", c.ok("users", "revoke", userID), userID)

	// Delete: schedule, workbook (force: the failing schedule is still there), integration.
	c.ok("schedules", "delete", schID)
	mustContain(t, "deleted schedule", c.fails(1, "schedules", "get", schID), "Error: NOT_FOUND", schID)
	mustContain(t, "workbook with schedules", c.fails(1, "workbooks", "delete", wbID), "Error: FAILED_PRECONDITION")
	mustContain(t, "workbooks delete --force", c.ok("workbooks", "delete", wbID, "--force"), failID)
	c.ok("integrations", "delete", intID)
	mustContain(t, "integrations after delete", c.ok("integrations", "list"), "(none)")
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(r-'0')
	}
	return n
}

// TestAuditctlConfig: settings come from flags, env, the config file (the
// --config one or the XDG default) and defaults, in that order; the key is
// never shown.
func TestAuditctlConfig(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite")
	c := newCtl(t, s).with("AUDITEXPORT_ADDR=", "AUDITEXPORT_API_KEY=")
	dir := t.TempDir()
	file := filepath.Join(dir, "auditctl.yaml")
	if err := os.WriteFile(file, []byte("addr: "+s.GRPCAddr+"\napi_key: "+s.AdminKey+"\noutput: json\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Nothing configured: the default address and no key.
	mustContain(t, "no key", c.fails(2, "users", "me"), "no API key", "AUDITEXPORT_API_KEY")
	mustContain(t, "defaults", c.ok("config"), "127.0.0.1:9090", "default")

	// Everything from the file (output: json included).
	var me map[string]any
	if err := json.Unmarshal([]byte(c.ok("--config", file, "users", "me")), &me); err != nil || getString(me, "user", "email") != "admin@example.com" {
		t.Fatalf("users me with --config: %v %v", err, me)
	}
	show := c.ok("--config", file, "config", "-o", "table")
	mustContain(t, "config from file", show, "file "+file, s.AdminKey[:12]+"_********")

	// Env beats the file, flags beat env.
	envBad := c.with("AUDITEXPORT_ADDR=127.0.0.1:1")
	mustContain(t, "env over file", envBad.fails(1, "--config", file, "users", "me"), "Error: UNAVAILABLE", "127.0.0.1:1")
	mustContain(t, "flag over env", envBad.ok("--config", file, "--addr", s.GRPCAddr, "users", "me", "-o", "table"), "admin@example.com")
	show = envBad.ok("--config", file, "config", "-o", "table", "--timeout", "5s")
	mustContain(t, "config sources", show, "env AUDITEXPORT_ADDR", "flag --output", "flag --timeout", "file "+file)

	// The XDG default location is read without --config; AUDITCTL_CONFIG names another.
	xdg := t.TempDir()
	if err := os.MkdirAll(filepath.Join(xdg, "auditctl"), 0o755); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(file)
	if err := os.WriteFile(filepath.Join(xdg, "auditctl", "config.yaml"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "XDG config", c.with("XDG_CONFIG_HOME="+xdg).ok("users", "me"), `"email": "admin@example.com"`)
	mustContain(t, "AUDITCTL_CONFIG", c.with("AUDITCTL_CONFIG="+file).ok("users", "me", "-o", "table"), "admin@example.com")

	// Mistakes in the file are reported, naming it.
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("adress: x\n"), 0o600)
	mustContain(t, "bad config", c.fails(2, "--config", bad, "config"), bad, "adress")
	mustContain(t, "missing config", c.fails(2, "--config", filepath.Join(dir, "nope.yaml"), "config"), "nope.yaml")
}

// TestAuditctlReadme runs the README's auditctl block as written.
func TestAuditctlReadme(t *testing.T) {
	t.Parallel()
	script := readmeBlock(t, "auditctl", "sh")

	s := StartServer(t, "sqlite")
	out := runReadmeScript(t, "auditctl walk-through", script, auditctlBin(t), append(newCtl(t, s).env, "AUDITEXPORT_DATA_DIR="+s.DataDir))
	mustContain(t, "README auditctl walk-through", out,
		"admin@example.com",         // users me
		"probeUri",                  // integrations test
		"Failures",                  // the element renamed
		"daily failures (cli)",      // schedules list
		"SUCCEEDED run_",            // send-now summary
		"object: file://"+s.DataDir, // the exported file
		"SEND_NOW",                  // runs list
		"schedule.cron: ",           // the field violation
		"refused (exit status 1)",   // and its exit status
		"PAUSED",                    // pause
		"SCHEDULE_STATE_ACTIVE",     // resume -o value=state
		"con_audit_logs",            // users grant
		"_********",                 // config masks the key
		"file "+s.DataDir+"/auditctl.yaml",
		"ci-bot@example.com", // users me with the created key's secret
	)
	if !regexp.MustCompile(`(?m)^secret\s+aek_[a-z0-9]{8}_[A-Za-z0-9]{32}$`).MatchString(out) {
		t.Errorf("keys create does not show the secret:\n%s", out)
	}
	if strings.Contains(string(out), s.AdminKey) {
		t.Errorf("the walk-through printed the API key:\n%s", out)
	}
	if matches, _ := filepath.Glob(filepath.Join(s.LocalDir("", "cli"), "*", "failures-*.csv.gz")); len(matches) != 1 {
		t.Errorf("exported files: %v", matches)
	}
}

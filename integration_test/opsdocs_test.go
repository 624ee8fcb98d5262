package integration_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestOperationsAlertRules: every metric the sample alerting rules of
// docs/operations.md use is exported by a running server after one export,
// and the silence alert's gauge carries the labels its rule groups by.
func TestOperationsAlertRules(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	start := strings.Index(text, "## Alerts")
	if start < 0 {
		t.Fatal("docs/operations.md has no Alerts section")
	}
	rules := text[start:]
	rules = rules[strings.Index(rules, "```yaml\n"):]
	rules = rules[:strings.Index(rules[len("```yaml\n"):], "```")+len("```yaml\n")]
	if !strings.Contains(rules, "alert: AuditExportScheduleSilent") {
		t.Fatalf("the Alerts section lost the silence alert:\n%s", rules)
	}
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`auditexport_[a-z_]+`).FindAllString(rules, -1) {
		used[m] = true
	}

	s := StartServer(t, "sqlite")
	ctx, cancel := context.WithTimeout(Ctx(s.AdminKey), 2*time.Minute)
	defer cancel()
	cl := s.Clients()
	dest := "file://" + s.LocalDir("", "alerts") + "/"
	must(cl.Integrations.CreateStorageIntegration(ctx, &pb.CreateStorageIntegrationRequest{
		StorageIntegration: &pb.StorageIntegration{Name: "alerts_local", Provider: pb.Provider_PROVIDER_LOCAL, Destination: dest}})).get(t)
	wbID, elID := savedElement(t, ctx, cl, time.Time{})
	schID := createSchedule(t, ctx, cl, wbID, elID, "alerts_local", dest+"a-{run_id}.csv", pb.Format_FORMAT_CSV, pb.Compression_COMPRESSION_NONE, nil)
	if last := checkStream(t, "SendNow", sendNow(t, ctx, cl, schID), 2); last.GetPhase() != pb.ExportPhase_EXPORT_PHASE_SUCCEEDED {
		t.Fatalf("send now ended %v", last.GetPhase())
	}

	// The run's counters are recorded as it ends, which may trail its
	// terminal message on the stream: scrape until every series the rules
	// use is there, for up to 10 s.
	var exported map[string]bool
	var gauge string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		exported, gauge = map[string]bool{}, ""
		for series := range scrapeMetrics(t, s) {
			name, _, _ := strings.Cut(series, "{")
			exported[name] = true
			if name == "auditexport_schedule_last_success_timestamp_seconds" && strings.Contains(series, schID) {
				gauge = series
			}
		}
		missing := gauge == ""
		for m := range used {
			missing = missing || !exported[m]
		}
		if !missing || time.Now().After(deadline) {
			break
		}
	}
	for m := range used {
		if !exported[m] {
			t.Errorf("the alert rules use %s, which the server does not export", m)
		}
	}
	if !used["auditexport_schedule_last_success_timestamp_seconds"] {
		t.Error("the silence alert does not use the last-success gauge")
	}
	for _, label := range []string{`org_id="` + s.OrgID("") + `"`, `schedule_id="` + schID + `"`, `state="ACTIVE"`} {
		if !strings.Contains(gauge, label) {
			t.Errorf("last-success gauge %q lacks %s (the silence rule groups by it)", gauge, label)
		}
	}
}

// runReadmeTools runs a README shell block under bash -euo pipefail with
// the given tools on PATH under the names the README uses.
func runReadmeTools(t *testing.T, label, script string, tools map[string]string, env []string) string {
	t.Helper()
	bin := t.TempDir()
	for name, path := range tools {
		if err := os.Symlink(path, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Env = append(env, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README %s failed: %v\n%s", label, err, out)
	}
	return string(out)
}

// TestReadmeBackupRestore runs the README's backup block as written against
// a running server holding S3 credentials, then starts a server on the
// restored data dir as the README says: the same admin key works and the
// restored integration's credentials decrypt (its Test succeeds).
func TestReadmeBackupRestore(t *testing.T) {
	t.Parallel()
	script := readmeBlock(t, "backup", "sh")
	s := StartServer(t, "sqlite")
	mc := testenv.StartMinIO(t)
	mc.CreateBucket(t, "readme-backup")
	ctx, cancel := context.WithTimeout(Ctx(s.AdminKey), 2*time.Minute)
	defer cancel()
	intID := must(s.Clients().Integrations.CreateStorageIntegration(ctx, &pb.CreateStorageIntegrationRequest{
		StorageIntegration: s3Integration("backup_s3", "s3://readme-backup/audit/", mc)})).get(t).GetStorageIntegration().GetId()

	backups, keys, restored := t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "restored")
	out := runReadmeTools(t, "backup", script, map[string]string{"auditexport": toolPath},
		append(os.Environ(), "AUDITEXPORT_DATA_DIR="+s.DataDir, "BACKUPS="+backups, "KEYS="+keys, "RESTORED="+restored))
	mustContain(t, "README backup", out, "master.key")
	if fi, err := os.Stat(restored); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("restored dir: %v %v, want 0700", fi, err)
	}

	r := &Server{t: t, Backend: "sqlite", DataDir: restored, DSN: "sqlite://" + filepath.Join(restored, "auditexport.db"), AdminKey: s.AdminKey}
	r.start()
	res := must(r.Clients().Integrations.TestStorageIntegration(ctx, &pb.TestStorageIntegrationRequest{Id: intID})).get(t)
	if !res.GetOk() {
		t.Fatalf("the restored integration's Test failed: %v", res)
	}
}

// TestReadmeRotateCredentials runs the README's credential-rotation recipe
// as written: the integration gets new credentials, its Test passes and its
// schedule stays ACTIVE (not paused by the change).
func TestReadmeRotateCredentials(t *testing.T) {
	t.Parallel()
	script := readmeBlock(t, "rotate-credentials", "sh")
	s := StartServer(t, "sqlite")
	mc := testenv.StartMinIO(t)
	mc.CreateBucket(t, "readme-rotate")
	ctx, cancel := context.WithTimeout(Ctx(s.AdminKey), 2*time.Minute)
	defer cancel()
	cl := s.Clients()
	old := s3Integration("rotate_s3", "s3://readme-rotate/audit/", mc)
	old.GetCredentials().GetAwsAccessKey().SecretAccessKey = "not-the-secret"
	intID := must(cl.Integrations.CreateStorageIntegration(ctx, &pb.CreateStorageIntegrationRequest{StorageIntegration: old})).get(t).GetStorageIntegration().GetId()
	wbID, elID := savedElement(t, ctx, cl, time.Time{})
	schID := createSchedule(t, ctx, cl, wbID, elID, "rotate_s3", "s3://readme-rotate/audit/{run_id}.csv", pb.Format_FORMAT_CSV, pb.Compression_COMPRESSION_NONE, nil)

	secret := filepath.Join(t.TempDir(), "new.secret")
	if err := os.WriteFile(secret, []byte(mc.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := runReadmeTools(t, "rotate-credentials", script, map[string]string{"auditctl": auditctlBin(t)},
		append(newCtl(t, s).env, "INT_ID="+intID, "NEW_ACCESS_KEY_ID="+mc.AccessKey, "NEW_SECRET_FILE="+secret))
	mustContain(t, "README rotate-credentials", out, "probeUri", schID)
	if strings.Contains(out, mc.SecretKey) {
		t.Errorf("the recipe printed the secret:\n%s", out)
	}
	sc := must(cl.Schedules.GetSchedule(ctx, &pb.GetScheduleRequest{Id: schID})).get(t).GetSchedule()
	if sc.GetState() != pb.ScheduleState_SCHEDULE_STATE_ACTIVE {
		t.Errorf("schedule after the rotation: %v (%v), want ACTIVE", sc.GetState(), sc.GetPauseReason())
	}
	if last := checkStream(t, "SendNow", sendNow(t, ctx, cl, schID), 2); last.GetPhase() != pb.ExportPhase_EXPORT_PHASE_SUCCEEDED {
		t.Errorf("send now with the new credentials ended %v: %v", last.GetPhase(), last.GetError())
	}
}

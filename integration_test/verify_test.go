package integration_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/auditexport/auditexport/clients/go/manifest"
	"github.com/auditexport/auditexport/clients/go/verify"
	"github.com/auditexport/auditexport/internal/testenv"
)

// objectsOnly drops signed manifests from a listing of keys.
func objectsOnly(keys []string) []string {
	var out []string
	for _, k := range keys {
		if !strings.HasSuffix(k, manifest.Suffix) {
			out = append(out, k)
		}
	}
	return out
}

// vxPeriods is how many scheduled periods each snapshot schedule exports
// before the stores are verified: a month of a daily schedule, here
// every-minute periods on the 30x clock (one every 2 s).
const vxPeriods = 30

// TestVerifiableExports: every export gets a signed manifest, and
// auditctl verify — reading each store directly with the provider's own
// credentials (MinIO with an Object Lock bucket the integration writes
// under retention, fake-gcs-server, Azurite, a local directory) —
// finds a month of scheduled periods of a snapshot schedule and an
// incremental schedule (with a Send now among its runs) complete and
// intact, chain heads included. Then, on copies of the local directory,
// each kind of tampering an auditor must see is found, named, and makes
// verify exit 1.
func TestVerifiableExports(t *testing.T) {
	t.Parallel()
	raceTest(t)
	s := StartServer(t, "sqlite", newCRClock().flags()...)
	xfLogsOnFailure(t, s)
	e := xfEnv{t, s}
	mc := testenv.StartMinIO(t)
	mc.CreateLockedBucket(t, "vxb") // the S3 integration writes under Object Lock
	gcs := testenv.StartFakeGCS(t)
	gcs.CreateBucket(t, "vxb")
	az := testenv.StartAzurite(t)
	az.CreateContainer(t, "vxb")
	azURL, err := url.Parse(az.Endpoint)
	testenv.Must(t, err)
	localDir := s.LocalDir("", "vx")
	type target struct {
		name, provider, dest, endpoint, creds string
		verifyURI                             string
		env                                   []string
	}
	targets := []target{
		{"s3", "PROVIDER_S3", "s3://vxb/p/", mc.Endpoint, xfS3Creds(mc, mc.SecretKey) + `,"objectLock":{"mode":"OBJECT_LOCK_MODE_GOVERNANCE","retainDays":1}`,
			"s3://vxb/p/?region=us-east-1&use_path_style=true&disable_https=true&endpoint=" + url.QueryEscape(mc.Endpoint),
			[]string{"AWS_ACCESS_KEY_ID=" + mc.AccessKey, "AWS_SECRET_ACCESS_KEY=" + mc.SecretKey, "AWS_EC2_METADATA_DISABLED=true",
				"AWS_CONFIG_FILE=" + os.DevNull, "AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull}},
		{"gcs", "PROVIDER_GCS", "gcs://vxb/p/", gcs.Endpoint, fmt.Sprintf(`{"gcsServiceAccount":{"jsonKey":%q}}`, serviceAccountJSON),
			"gs://vxb/p/", []string{"STORAGE_EMULATOR_HOST=" + gcs.Host}},
		{"azure", "PROVIDER_AZURE_BLOB", "azure://" + az.Account + ".blob.core.windows.net/vxb/p/", az.Endpoint,
			fmt.Sprintf(`{"azureSharedKey":{"accountName":%q,"accountKey":%q}}`, az.Account, az.Key),
			"azblob://vxb/p/?protocol=http&localemu=true&domain=" + azURL.Host,
			[]string{"AZURE_STORAGE_ACCOUNT=" + az.Account, "AZURE_STORAGE_KEY=" + az.Key}},
		{"local", "PROVIDER_LOCAL", "file://" + localDir + "/", "", "", "file://" + localDir + "/", nil},
	}
	wb, el := crWorkbook(e, "vx", true)
	type sched struct{ id, target string }
	var snaps, incs []sched
	var localIntegID string
	for _, tg := range targets {
		integ := "vx_" + tg.name
		if tg.creds == "" {
			localIntegID = getString(e.must("CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":%q,"provider":%q,"destination":%q}}`, integ, tg.provider, tg.dest)), "storageIntegration", "id")
		} else {
			e.integration(integ, tg.provider, tg.dest, tg.endpoint, tg.creds)
		}
		mk := func(name, mode, format, compression, uri string) string {
			b := e.must("CreateSchedule", fmt.Sprintf(`{"workbookId":%q,"schedule":{"name":%q,"elementId":%q,"format":%q,"compression":%q,
				"mode":%q,"destination":{"cloudStorage":{"storageIntegrationName":%q,"uri":%q}},"cron":"* * * * *","timeZone":"UTC"}}`,
				wb, name, el, format, compression, mode, integ, tg.dest+uri))
			return getString(b, "schedule", "id")
		}
		snaps = append(snaps, sched{mk("vx-snap-"+tg.name, "EXPORT_MODE_SNAPSHOT", "FORMAT_CSV", "COMPRESSION_GZIP", "snap/audit-{period_end}.csv.gz"), tg.name})
		incs = append(incs, sched{mk("vx-inc-"+tg.name, "EXPORT_MODE_INCREMENTAL", "FORMAT_JSONL", "COMPRESSION_ZSTD", "inc/audit-{period_end}-{run_id}.jsonl.zst"), tg.name})
	}
	db := s.OpenDB()
	p := s.Placeholder
	succeeded := func(id, trigger string) int {
		n := 0
		for _, r := range crRuns(t, s, db, "schedule_id = "+p(1), id) {
			if r.State == "SUCCEEDED" && (trigger == "" || r.Trigger == trigger) {
				n++
			}
		}
		return n
	}
	// New rows for the incremental windows while the month runs, and one
	// Send now per incremental schedule half-way.
	deadline := time.Now().Add(4 * time.Minute)
	sentNow := false
	for {
		done := true
		for _, sc := range snaps {
			if succeeded(sc.id, "SCHEDULED") < vxPeriods {
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d SUCCEEDED periods per snapshot schedule within 4 minutes: %+v", vxPeriods, crRuns(t, s, db, ""))
		}
		if !sentNow && succeeded(snaps[0].id, "SCHEDULED") >= vxPeriods/2 {
			for _, sc := range incs {
				// An incremental schedule runs one export at a time: a
				// Send now during a scheduled run is refused, so try again.
				r := newCtl(t, s).run("", "schedules", "send-now", sc.id, "--progress", "lines")
				for try := 0; r.code != 0 && strings.Contains(r.stderr, "RUN_IN_PROGRESS") && try < 50; try++ {
					time.Sleep(20 * time.Millisecond)
					r = newCtl(t, s).run("", "schedules", "send-now", sc.id, "--progress", "lines")
				}
				if r.code != 0 {
					t.Fatalf("send-now %s: %d %s %s", sc.id, r.code, r.stdout, r.stderr)
				}
			}
			sentNow = true
		}
		e.must("CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":"vx_rows_%d","provider":"PROVIDER_LOCAL","destination":%q}}`,
			time.Now().UnixNano(), "file://"+s.LocalDir("", "vx-rows")+"/"))
		time.Sleep(500 * time.Millisecond)
	}
	for _, sc := range append(slices.Clone(snaps), incs...) {
		e.must("PauseSchedule", fmt.Sprintf(`{"id":%q}`, sc.id))
	}
	// The runs queued before the pause drain (on a busy machine the
	// scheduler is minutes behind its 30x clock); the wait fails only when
	// none has finished for a minute.
	paused := time.Now()
	for left, quiet := -1, time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		n := len(crRuns(t, s, db, "state IN ('QUEUED','RUNNING')"))
		if n == 0 {
			break
		}
		if n != left {
			left, quiet = n, time.Now().Add(time.Minute)
		}
		if time.Now().After(quiet) {
			t.Fatalf("runs still queued or running, none finished for a minute (%s after pausing every schedule): %+v",
				time.Since(paused).Round(time.Second), crRuns(t, s, db, "state IN ('QUEUED','RUNNING')"))
		}
	}
	t.Logf("the runs queued before the pause drained in %s", time.Since(paused).Round(time.Millisecond))

	ctl := newCtl(t, s)
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	testenv.Must(t, os.WriteFile(keysFile, []byte(ctl.ok("signing-keys", "list", "-o", "json")), 0o600))
	if creds := ctl.ok("integrations", "credentials", localIntegID, "-o", "json"); !strings.Contains(creds, `"signingKeys"`) {
		t.Errorf("View credentials does not show the signing keys: %s", creds)
	}

	for _, tg := range targets {
		t.Run("clean/"+tg.name, func(t *testing.T) {
			c := ctl.with() // a copy; its env gets the store's credentials (an Azure key ends with "=", which with() reads as unset)
			c.env = append(c.env, tg.env...)
			r := c.run("", "verify", tg.verifyURI, "--keys", keysFile, "--heads", "-o", "json")
			rep := vxReport(t, r)
			if r.code != 0 || !rep.OK() {
				t.Fatalf("verify %s: exit %d, findings %v\n%s", tg.verifyURI, r.code, rep.Findings, r.stderr)
			}
			if len(rep.Chains) != 2 {
				t.Fatalf("verify %s: %d chains, want 2 (snapshot, incremental): %+v", tg.verifyURI, len(rep.Chains), rep.Chains)
			}
			for _, ch := range rep.Chains {
				if n := succeeded(ch.ScheduleID, ""); ch.Links != n || ch.First != 1 || ch.Last != int64(n) {
					t.Errorf("chain of %s: links #%d..#%d (%d), want #1..#%d (its SUCCEEDED runs)", ch.ScheduleID, ch.First, ch.Last, ch.Links, n)
				}
			}
			if rep.Verified != rep.Objects || rep.Objects != rep.Manifests || rep.Objects < vxPeriods {
				t.Errorf("verify %s: %d objects, %d verified, %d manifests", tg.verifyURI, rep.Objects, rep.Verified, rep.Manifests)
			}
		})
	}

	// Tampering, each on a fresh copy of the local directory.
	files := crFiles(t, localDir) // objects, sorted by name = by period
	sort.Strings(files)
	var snapFiles []string
	for _, f := range files {
		if strings.HasPrefix(f, "snap/") {
			snapFiles = append(snapFiles, f)
		}
	}
	if len(snapFiles) < vxPeriods {
		t.Fatalf("%d snapshot objects in %s", len(snapFiles), localDir)
	}
	last := snapFiles[len(snapFiles)-1]
	// mid, from the middle backwards: a period followed by one whose
	// object has other bytes (other). Periods with no new matching rows
	// export the same bytes; on a busy machine the scheduler runs behind
	// its clock, and the periods it catches up on after the rows stopped
	// coming are all alike.
	mid, other, midIdx := "", "", 0
	for i := len(snapFiles) / 2; i >= 0 && other == ""; i-- {
		mid, midIdx = snapFiles[i], i
		midSum, _ := sha256File(t, filepath.Join(localDir, mid))
		for _, f := range snapFiles[i+1:] {
			if sum, _ := sha256File(t, filepath.Join(localDir, f)); sum != midSum {
				other = f
				break
			}
		}
	}
	if other == "" {
		t.Fatalf("every snapshot object has the same bytes: %v", snapFiles)
	}
	_, foreign, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		heads  bool
		want   []string // kind + " " + object
	}{
		{"deleted object", func(t *testing.T, dir string) { testenv.Must(t, os.Remove(filepath.Join(dir, mid))) },
			false, []string{verify.ObjectMissing + " " + mid}},
		{"deleted manifest", func(t *testing.T, dir string) { testenv.Must(t, os.Remove(filepath.Join(dir, mid+manifest.Suffix))) },
			false, []string{verify.ManifestMissing + " " + mid, verify.ChainGap + " " + snapFiles[midIdx+1] + manifest.Suffix}},
		{"edited byte", func(t *testing.T, dir string) {
			f := filepath.Join(dir, mid)
			b, err := os.ReadFile(f)
			testenv.Must(t, err)
			b[len(b)/2] ^= 0x01
			testenv.Must(t, os.WriteFile(f, b, 0o644))
		}, false, []string{verify.ChecksumMismatch + " " + mid}},
		{"replaced object, forged checksum", func(t *testing.T, dir string) {
			// Another period's object put in place, its manifest's claims
			// rewritten to match, the old signature kept.
			copyFile(t, filepath.Join(dir, other), filepath.Join(dir, mid))
			vxRewrite(t, filepath.Join(dir, mid+manifest.Suffix), func(m *manifest.Manifest) {
				sum, n := sha256File(t, filepath.Join(dir, mid))
				m.SHA256, m.ByteCount = sum, int64(n)
			}, nil)
		}, false, []string{verify.BadSignature + " " + mid + manifest.Suffix}},
		{"reordered periods", func(t *testing.T, dir string) {
			a, b := filepath.Join(dir, mid), filepath.Join(dir, other)
			testenv.Must(t, os.Rename(a, a+".tmp"))
			testenv.Must(t, os.Rename(b, a))
			testenv.Must(t, os.Rename(a+".tmp", b))
			testenv.Must(t, os.Rename(a+manifest.Suffix, a+".tmp"))
			testenv.Must(t, os.Rename(b+manifest.Suffix, a+manifest.Suffix))
			testenv.Must(t, os.Rename(a+".tmp", b+manifest.Suffix))
		}, false, []string{verify.Misplaced + " " + mid + manifest.Suffix, verify.Misplaced + " " + other + manifest.Suffix}},
		{"duplicated period", func(t *testing.T, dir string) {
			dup := strings.TrimSuffix(mid, ".csv.gz") + "-copy.csv.gz"
			copyFile(t, filepath.Join(dir, mid), filepath.Join(dir, dup))
			copyFile(t, filepath.Join(dir, mid+manifest.Suffix), filepath.Join(dir, dup+manifest.Suffix))
		}, false, []string{verify.Misplaced + " " + strings.TrimSuffix(mid, ".csv.gz") + "-copy.csv.gz" + manifest.Suffix}},
		{"signed by an unknown key", func(t *testing.T, dir string) {
			vxRewrite(t, filepath.Join(dir, mid+manifest.Suffix), func(m *manifest.Manifest) {}, foreign)
		}, false, []string{verify.UnknownKey + " " + mid + manifest.Suffix}},
		{"deleted newest export", func(t *testing.T, dir string) {
			testenv.Must(t, os.Remove(filepath.Join(dir, last)))
			testenv.Must(t, os.Remove(filepath.Join(dir, last+manifest.Suffix)))
		}, true, []string{verify.HeadMismatch + " " + snapFiles[len(snapFiles)-2] + manifest.Suffix}},
	}
	for _, c := range cases {
		t.Run("tampered/"+c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "copy")
			testenv.Must(t, os.CopyFS(dir, os.DirFS(localDir)))
			c.tamper(t, dir)
			args := []string{"verify", "file://" + dir + "/", "--keys", keysFile}
			if c.heads {
				args = append(args, "--heads")
			}
			args = append(args, "-o", "json")
			r := ctl.run("", args...)
			rep := vxReport(t, r)
			var got []string
			for _, f := range rep.Findings {
				got = append(got, f.Kind+" "+f.Object)
			}
			if r.code != 1 {
				t.Errorf("verify exit %d, want 1", r.code)
			}
			for _, w := range c.want {
				if !slices.Contains(got, w) {
					t.Errorf("findings %q lack %q", got, w)
				}
			}
			// The human report names the object and the problem too.
			args[len(args)-1] = "table"
			if txt := ctl.run("", args...); txt.code != 1 || !strings.Contains(txt.stdout, "FAILED:") || !strings.Contains(txt.stdout, strings.SplitN(c.want[0], " ", 2)[1]) {
				t.Errorf("verify (table) exit %d:\n%s", txt.code, txt.stdout)
			}
		})
	}
}

func vxReport(t *testing.T, r ctlResult) verify.Report {
	t.Helper()
	var rep verify.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("verify -o json: %v\nstdout:\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
	return rep
}

// vxRewrite edits a manifest's claims; with key nil the old signature is
// kept (a forgery), else the payload is signed anew by key under a key id
// the organization never had.
func vxRewrite(t *testing.T, path string, edit func(*manifest.Manifest), key ed25519.PrivateKey) {
	t.Helper()
	b, err := os.ReadFile(path)
	testenv.Must(t, err)
	var env manifest.Envelope
	testenv.Must(t, json.Unmarshal(b, &env))
	var m manifest.Manifest
	testenv.Must(t, json.Unmarshal(env.Payload, &m))
	edit(&m)
	if key != nil {
		out, err := manifest.Sign(&m, "sk_forged", key)
		testenv.Must(t, err)
		testenv.Must(t, os.WriteFile(path, out, 0o644))
		return
	}
	env.Payload, err = json.Marshal(m)
	testenv.Must(t, err)
	out, err := json.Marshal(env)
	testenv.Must(t, err)
	testenv.Must(t, os.WriteFile(path, out, 0o644))
}

// TestReadmeVerify runs the README's verify block as written against a
// local export made by a Send now: it prints OK; again after the signing
// key is rotated and a Parquet export signed by the new key is added; and
// verify fails once a byte of the first object is changed.
func TestReadmeVerify(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite")
	_, schID := localSchedule(t, s, "readme-verify")
	dir := s.LocalDir("", "readme-verify")
	ctl := newCtl(t, s)
	if r := ctl.run("", "schedules", "send-now", schID, "--progress", "lines"); r.code != 0 {
		t.Fatalf("send-now: %d %s %s", r.code, r.stdout, r.stderr)
	}
	script := readmeBlock(t, "verify", "bash")
	work := t.TempDir()
	env := append(ctl.env, "EXPORT_DIR="+dir)
	out := runReadmeScript(t, "verify", "cd "+work+"\n"+script, auditctlBin(t), env)
	mustContain(t, "README verify", out, "OK: every object is signed", "verified")

	// Rotation: the new key signs from now on, the old one stays listed
	// and keeps verifying what it signed.
	rot := ctl.ok("signing-keys", "rotate", "-o", "json")
	// The next export is Parquet: verify counts its rows from the footer.
	ctl.ok("schedules", "update", schID, "--format", "parquet", "--compression", "none",
		"--integration", "readme-verify", "--uri", "file://"+dir+"/x-{run_id}.parquet")
	if r := ctl.run("", "schedules", "send-now", schID, "--progress", "lines"); r.code != 0 {
		t.Fatalf("send-now after rotating: %d %s %s", r.code, r.stdout, r.stderr)
	}
	keys, err := verify.ParseKeys([]byte(ctl.ok("signing-keys", "list", "-o", "json")))
	testenv.Must(t, err)
	var rotated struct {
		SigningKey struct {
			ID string `json:"id"`
		} `json:"signingKey"`
	}
	testenv.Must(t, json.Unmarshal([]byte(rot), &rotated))
	if len(keys) != 2 || keys[rotated.SigningKey.ID] == nil {
		t.Fatalf("keys after a rotation: %v, want 2 with %s", keys, rotated.SigningKey.ID)
	}
	out = runReadmeScript(t, "verify", "cd "+work+"\n"+script, auditctlBin(t), env)
	mustContain(t, "README verify after a rotation", out, "OK: every object is signed", "2 verified")
	signers := map[string]bool{}
	objs := crFiles(t, dir)
	for _, o := range objs {
		mf, err := os.ReadFile(filepath.Join(dir, o+manifest.Suffix))
		testenv.Must(t, err)
		var env manifest.Envelope
		testenv.Must(t, json.Unmarshal(mf, &env))
		signers[env.Signatures[0].KeyID] = true
	}
	if len(objs) != 2 || len(signers) != 2 || !signers[rotated.SigningKey.ID] {
		t.Fatalf("objects %v signed by %v, want 2 by the old key and the new one %s", objs, signers, rotated.SigningKey.ID)
	}
	objs = objs[:1]
	f := filepath.Join(dir, objs[0])
	b, err := os.ReadFile(f)
	testenv.Must(t, err)
	b[len(b)-2] ^= 0x20
	testenv.Must(t, os.WriteFile(f, b, 0o644))
	r := ctl.with("EXPORT_DIR="+dir).run("", "verify", "file://"+dir+"/", "--keys", filepath.Join(work, "signing-keys.json"))
	if r.code != 1 || !strings.Contains(r.stdout, verify.ChecksumMismatch+" "+objs[0]) {
		t.Errorf("after changing a byte: exit %d\n%s", r.code, r.stdout)
	}
}

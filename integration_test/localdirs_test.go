package integration_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/auth"
)

// ldEnv calls RPCs as one organization's ADMIN.
type ldEnv struct {
	t   *testing.T
	s   *Server
	key string
}

func (e ldEnv) call(tr Transport, rpc, req string) Result {
	e.t.Helper()
	return tr.Call(e.t, rpc, e.key, req, "")
}

func (e ldEnv) must(rpc, req string) map[string]any {
	e.t.Helper()
	r := e.call(grpcTransport{e.s}, rpc, req)
	if r.Code != codes.OK {
		e.t.Fatalf("%s %s: %v %s", rpc, req, r.Code, r.Message)
	}
	return r.Body
}

func (e ldEnv) integration(name, dir string) string {
	e.t.Helper()
	return getString(e.must("CreateStorageIntegration", fmt.Sprintf(
		`{"storageIntegration":{"name":%q,"provider":"PROVIDER_LOCAL","destination":%q}}`, name, "file://"+dir+"/")), "storageIntegration", "id")
}

// schedule saves an AUDIT_LOGS workbook scheduled to uri and returns the schedule id.
func (e ldEnv) schedule(name, intName, uri string) string {
	e.t.Helper()
	ex := e.must("ExploreTable", `{"connectionId":"con_audit_logs","table":"AUDIT_LOGS"}`)
	wb := getString(ex, "workbook", "id")
	el := getPath(ex, "workbook", "elements").([]any)[0].(map[string]any)["id"].(string)
	e.must("SaveWorkbookAs", fmt.Sprintf(`{"id":%q,"name":"wb-%s"}`, wb, name))
	return getString(e.must("CreateSchedule", fmt.Sprintf(`{"workbookId":%q,"schedule":{"name":%q,"elementId":%q,
		"format":"FORMAT_CSV","destination":{"cloudStorage":{"storageIntegrationName":%q,"uri":%q}},
		"cron":"0 0 1 1 *","timeZone":"UTC"}}`, wb, name, el, intName, uri)), "schedule", "id")
}

// run sends the schedule now and returns the finished run.
func (e ldEnv) run(schID string) *pb.ExportRun {
	e.t.Helper()
	id := sendNowToEnd(e.t, e.s, e.key, schID)
	ctx, cancel := context.WithTimeout(Ctx(e.key), 30*time.Second)
	defer cancel()
	r, err := pb.NewScheduleServiceClient(e.s.Conn).GetExportRun(ctx, &pb.GetExportRunRequest{Id: id})
	if err != nil {
		e.t.Fatalf("GetExportRun: %v", err)
	}
	return r.GetRun()
}

// tree lists every entry under dir with its mode ("rel mode").
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".auditexport-tmp" {
			// The server's own in-progress writes: owner-only, and empty
			// once every write has finished.
			ents, _ := os.ReadDir(p)
			if len(ents) > 0 || fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: mode %v with %d leftover temp files, want 0700 and empty", p, fi.Mode(), len(ents))
			}
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, fmt.Sprintf("%s %v", rel, fi.Mode()))
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// TestLocalDestinationsPerOrganization: an organization's ADMIN can point
// LOCAL integrations only into <local-root>/<its org id>/, over gRPC and
// REST, and no symbolic link planted there leads a run or a Test out of it
// (into another organization's directory or anywhere else).
func TestLocalDestinationsPerOrganization(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite")
	xfLogsOnFailure(t, s)
	a, b := ldEnv{t, s, s.AdminKey}, ldEnv{t, s, s.CreateOrg("tenant-b")}
	dirA, dirB := s.LocalDir(a.key), s.LocalDir(b.key)
	outside := t.TempDir()

	// Organization A's own export, which B must not be able to touch.
	a.integration("reports", dirA+"/reports")
	if r := a.run(a.schedule("a-daily", "reports", "file://"+dirA+"/reports/a-{run_id}.csv")); r.GetState() != pb.RunState_RUN_STATE_SUCCEEDED {
		t.Fatalf("organization A's own export: %v", r)
	}
	treeA := tree(t, dirA)
	if len(treeA) != 4 { // ., reports, the file, its manifest
		t.Fatalf("organization A's directory: %v", treeA)
	}

	const field = "storage_integration.destination"
	wantDir := "file://" + dirB + "/"
	for _, tr := range transports(s) {
		t.Run("save/"+tr.Name(), func(t *testing.T) {
			for _, dest := range []string{dirA + "/reports/", dirA + "/", s.LocalRoot + "/", s.LocalRoot + "/shared/", dirB + "x/", outside + "/"} {
				res := b.call(tr, "CreateStorageIntegration", fmt.Sprintf(
					`{"storageIntegration":{"name":"steal_%s","provider":"PROVIDER_LOCAL","destination":%q}}`, tr.Name(), "file://"+dest))
				if res.Code != codes.InvalidArgument || !slices.Equal(res.Violations, []string{field}) || !strings.Contains(res.Message, wantDir) {
					t.Errorf("B creating a LOCAL integration at %s: %v %v %q, want INVALID_ARGUMENT on %s naming %s", dest, res.Code, res.Violations, res.Message, field, wantDir)
				}
			}
			id := b.integration("own_"+tr.Name(), dirB+"/own-"+tr.Name())
			res := b.call(tr, "UpdateStorageIntegration", fmt.Sprintf(
				`{"storageIntegration":{"id":%q,"destination":%q},"updateMask":"destination"}`, id, "file://"+dirA+"/reports/"))
			if res.Code != codes.InvalidArgument || !slices.Equal(res.Violations, []string{field}) || !strings.Contains(res.Message, wantDir) {
				t.Errorf("B moving its integration into A's directory: %v %v %q", res.Code, res.Violations, res.Message)
			}
			got := b.call(tr, "GetStorageIntegration", fmt.Sprintf(`{"id":%q}`, id))
			if d := getString(got.Body, "storageIntegration", "destination"); d != "file://"+dirB+"/own-"+tr.Name()+"/" {
				t.Errorf("destination after the refused update: %q", d)
			}
		})
	}

	// Links planted inside B's directory: into A's directory (relative, so
	// it stays inside the shared root) and out of the root (absolute).
	links := filepath.Join(dirB, "links")
	if err := os.MkdirAll(links, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..", "..", filepath.Base(dirA), "reports"), filepath.Join(links, "to-a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(links, "to-outside")); err != nil {
		t.Fatal(err)
	}
	b.integration("links", links)
	probes := map[string]string{"to-a": b.integration("via_a", links+"/to-a"), "to-outside": b.integration("via_outside", links+"/to-outside")}
	// An integration saved before directories were per organization: the
	// Test (and any run) refuses it and says to edit it.
	legacy := b.integration("legacy", dirB+"/legacy")
	db := s.OpenDB()
	if _, err := db.Exec("UPDATE storage_integrations SET destination = "+s.Placeholder(1)+" WHERE id = "+s.Placeholder(2),
		"file://"+s.LocalRoot+"/legacy/", legacy); err != nil {
		t.Fatal(err)
	}
	for _, tr := range transports(s) {
		for sub, id := range probes {
			res := b.call(tr, "TestStorageIntegration", fmt.Sprintf(`{"id":%q}`, id))
			if res.Code != codes.OK || getPath(res.Body, "ok") == true || getString(res.Body, "failedStep") != "WRITE" ||
				!strings.Contains(getString(res.Body, "providerMessage"), "leads outside the organization's LOCAL directory") {
				t.Errorf("Test of B's integration through the link %s over %s: %v %v", sub, tr.Name(), res.Code, res.Body)
			}
		}
		res := b.call(tr, "TestStorageIntegration", fmt.Sprintf(`{"id":%q}`, legacy))
		if res.Code != codes.OK || getString(res.Body, "failedStep") != "OPEN" ||
			!strings.Contains(getString(res.Body, "providerMessage"), "edit the integration's destination") ||
			!strings.Contains(getString(res.Body, "providerMessage"), wantDir) {
			t.Errorf("Test of a legacy integration outside the organization's directory over %s: %v %v", tr.Name(), res.Code, res.Body)
		}
	}
	for _, sub := range []string{"to-a", "to-outside"} {
		r := b.run(b.schedule("b-"+sub, "links", "file://"+links+"/"+sub+"/x-{run_id}.csv"))
		if r.GetState() != pb.RunState_RUN_STATE_FAILED || !strings.Contains(r.GetError().GetProviderMessage(), "leads outside the organization's LOCAL directory") {
			t.Errorf("B's run through the link %s: %v", sub, r)
		}
	}
	if got := tree(t, outside); len(got) != 1 {
		t.Errorf("files written outside the local root: %v", got)
	}
	if got := tree(t, dirA); !slices.Equal(got, treeA) {
		t.Errorf("organization A's directory changed: %v, was %v", got, treeA)
	}
}

// TestDataFilesOwnerOnly: whatever the umask, the server creates its data
// dir, the SQLite database (and its -wal and -shm files), the master key and
// LOCAL exports (and their directories) readable by its own user only.
func TestDataFilesOwnerOnly(t *testing.T) {
	t.Parallel()
	s := &Server{t: t, Backend: "sqlite", DataDir: filepath.Join(t.TempDir(), "data")}
	s.LocalRoot = filepath.Join(s.DataDir, "exports")
	s.DSN = "sqlite://" + filepath.Join(s.DataDir, "auditexport.db")
	s.AdminKey, _, _ = auth.NewAPIKey()
	old := syscall.Umask(0) // the server inherits it; no other test runs meanwhile
	s.start()
	syscall.Umask(old)
	xfLogsOnFailure(t, s)

	a := ldEnv{t, s, s.AdminKey}
	dir := s.LocalDir("", "deep", "er")
	a.integration("perm", dir)
	if r := a.run(a.schedule("perm", "perm", "file://"+dir+"/{yyyy}/{mm}/x-{run_id}.csv")); r.GetState() != pb.RunState_RUN_STATE_SUCCEEDED {
		t.Fatalf("export: %v", r)
	}
	want := map[string]os.FileMode{".": fs.ModeDir | 0o700, "master.key": 0o600,
		"auditexport.db": 0o600, "auditexport.db-wal": 0o600, "auditexport.db-shm": 0o600}
	for name, mode := range want {
		fi, err := os.Lstat(filepath.Join(s.DataDir, name))
		if err != nil || fi.Mode() != mode {
			t.Errorf("%s: %v (%v), want %v", name, fi.Mode(), err, mode)
		}
	}
	exports := tree(t, s.LocalRoot)
	if len(exports) != 8 { // exports, <org>, deep, er, yyyy, mm, the file, its manifest
		t.Errorf("the local root holds %v", exports)
	}
	for _, e := range exports {
		if !strings.HasSuffix(e, " drwx------") && !strings.HasSuffix(e, " -rw-------") {
			t.Errorf("%s under the local root: want drwx------ or -rw-------", e)
		}
	}
}

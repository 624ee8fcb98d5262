package destination

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// localFixture is a --local-root with two organizations' directories.
type localFixture struct {
	root, outside string
	dirs          LocalDirs
}

func newLocalFixture(t *testing.T) localFixture {
	t.Helper()
	f := localFixture{root: t.TempDir(), outside: t.TempDir()}
	f.dirs = LocalDirs{Root: f.root}
	for _, org := range []string{"org_a", "org_b"} {
		if err := os.MkdirAll(filepath.Join(f.root, org, "dest"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f localFixture) open(t *testing.T, org, dest string) *blob.Bucket {
	t.Helper()
	b, _, err := Open(context.Background(), Integration{Provider: Local, Destination: "file://" + dest, OrgID: org}, OpenOptions{Local: f.dirs})
	if err != nil {
		t.Fatalf("open %s as %s: %v", dest, org, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// files lists every file and link under dir (relative paths).
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func upload(b *blob.Bucket, key string) error {
	return b.Upload(context.Background(), key, strings.NewReader("a,b\n1,2\n"), &blob.WriterOptions{ContentType: "text/csv"})
}

func TestLocalBucketRoundTripModes(t *testing.T) {
	// Modes are set, not left to the umask: with none, 0750/0644 would show.
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	f := newLocalFixture(t)
	ctx := context.Background()
	b := f.open(t, "org_c", f.root+"/org_c/exports/")
	if err := upload(b, "2024/07/x.csv"); err != nil {
		t.Fatal(err)
	}
	got, err := b.ReadAll(ctx, "2024/07/x.csv")
	if err != nil || string(got) != "a,b\n1,2\n" {
		t.Fatalf("read back %q, %v", got, err)
	}
	if a, err := b.Attributes(ctx, "2024/07/x.csv"); err != nil || a.Size != 8 {
		t.Fatalf("attributes %+v, %v", a, err)
	}
	for rel, want := range map[string]os.FileMode{
		"org_c": 0o700 | fs.ModeDir, "org_c/exports": 0o700 | fs.ModeDir, "org_c/exports/2024": 0o700 | fs.ModeDir,
		"org_c/exports/2024/07": 0o700 | fs.ModeDir, "org_c/exports/2024/07/x.csv": 0o600,
	} {
		fi, err := os.Lstat(filepath.Join(f.root, rel))
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", rel, fi.Mode(), err, want)
		}
	}
	if got := files(t, f.root); len(got) != 1 {
		t.Errorf("files under the root: %v (no temp or .attrs files expected)", got)
	}
	if err := b.Delete(ctx, "2024/07/x.csv"); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "2024/07/x.csv"); gcerrors.Code(err) != gcerrors.NotFound {
		t.Errorf("second delete: %v (code %v), want NotFound", err, gcerrors.Code(err))
	}
	if _, err := b.ReadAll(ctx, "2024/07"); gcerrors.Code(err) != gcerrors.NotFound {
		t.Errorf("reading a directory: %v, want NotFound", err)
	}
}

func TestLocalBucketCanceledWriteLeavesNothing(t *testing.T) {
	f := newLocalFixture(t)
	b := f.open(t, "org_a", f.root+"/org_a/dest/")
	ctx, cancel := context.WithCancel(context.Background())
	w, err := b.NewWriter(ctx, "part.csv", &blob.WriterOptions{ContentType: "text/csv"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("half a file")); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := w.Close(); err == nil {
		t.Fatal("closing a canceled write succeeded")
	}
	if got := files(t, f.root); len(got) != 0 {
		t.Errorf("a canceled write left %v", got)
	}
}

func TestLocalBucketRefusesEscapes(t *testing.T) {
	f := newLocalFixture(t)
	orgA, orgB := filepath.Join(f.root, "org_a"), filepath.Join(f.root, "org_b")
	link := func(target, name string) {
		t.Helper()
		if err := os.Symlink(target, name); err != nil {
			t.Fatal(err)
		}
	}
	link(f.outside, filepath.Join(orgB, "dest", "to-outside"))
	link("../../org_a/dest", filepath.Join(orgB, "dest", "to-org-a"))
	link(orgA, filepath.Join(orgB, "dest", "to-org-a-abs"))
	if err := os.WriteFile(filepath.Join(f.outside, "secret.csv"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	link(filepath.Join(f.outside, "secret.csv"), filepath.Join(orgB, "dest", "secret.csv"))

	b := f.open(t, "org_b", orgB+"/dest/")
	// Through links: refused by os.Root on the organization's directory.
	for _, key := range []string{"to-outside/x.csv", "to-org-a/x.csv", "to-org-a-abs/x.csv", "to-outside/deep/er/x.csv"} {
		err := upload(b, key)
		if gcerrors.Code(err) != gcerrors.PermissionDenied || !strings.Contains(err.Error(), "leads outside the organization's LOCAL directory") {
			t.Errorf("upload %q: %v, want PermissionDenied (leads outside)", key, err)
		}
	}
	// By name: refused before the filesystem is asked.
	for _, key := range []string{"../x.csv", "../../org_a/dest/x.csv", "a/../../x.csv", "/etc/x.csv", "a//x.csv", "./x.csv", "a\\..\\x.csv", ""} {
		if err := upload(b, key); gcerrors.Code(err) != gcerrors.InvalidArgument || !strings.Contains(err.Error(), "invalid LOCAL object name") {
			t.Errorf("upload %q: %v, want InvalidArgument", key, err)
		}
	}
	if _, err := b.ReadAll(context.Background(), "secret.csv"); gcerrors.Code(err) != gcerrors.PermissionDenied {
		t.Errorf("reading through a link to outside: %v, want PermissionDenied", err)
	}
	if got := files(t, f.outside); len(got) != 1 {
		t.Errorf("files outside the root: %v", got)
	}
	if got := files(t, orgA); len(got) != 0 {
		t.Errorf("files in org_a's directory: %v", got)
	}

	// The Test probe fails cleanly at WRITE.
	res := Probe(context.Background(), Integration{Provider: Local, Destination: "file://" + orgB + "/dest/to-org-a/", OrgID: "org_b"}, OpenOptions{Local: f.dirs})
	if res.OK || res.FailedStep != "WRITE" || !strings.Contains(res.Message, "leads outside") {
		t.Errorf("probe through a link into org_a: %+v", res)
	}
	if got := files(t, orgA); len(got) != 0 {
		t.Errorf("the probe wrote into org_a: %v", got)
	}
}

func TestLocalOpenRefusesOtherOrganizations(t *testing.T) {
	f := newLocalFixture(t)
	ctx := context.Background()
	// The organization's own directory replaced by a link into another's.
	if err := os.RemoveAll(filepath.Join(f.root, "org_b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("org_a", filepath.Join(f.root, "org_b")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ org, dest, want string }{
		{"org_b", f.root + "/org_a/dest/", "must lie under this organization's directory file://" + f.root + "/org_b/"},
		{"org_b", f.root + "/", "must lie under this organization's directory"},
		{"org_b", f.root + "/org_b/dest/", "is not a directory (symbolic links are not followed)"},
		{"org_b", f.outside + "/", "must lie under"},
		{"../org_a", f.root + "/org_a/", "cannot name a directory"},
		{"", f.root + "/org_a/", "cannot name a directory"},
	} {
		b, _, err := Open(ctx, Integration{Provider: Local, Destination: "file://" + tc.dest, OrgID: tc.org}, OpenOptions{Local: f.dirs})
		if err == nil {
			b.Close()
			t.Errorf("%s opened %s", tc.org, tc.dest)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s opening %s: %v, want %q", tc.org, tc.dest, err, tc.want)
		}
	}
	if got := files(t, f.root); len(got) != 1 || got[0] != "org_b" {
		t.Errorf("files under the root: %v", got)
	}
}

func TestLocalDirsMap(t *testing.T) {
	f := newLocalFixture(t)
	mapped := filepath.Join(f.outside, "tenant-c")
	f.dirs.Map = map[string]string{"org_c": mapped}
	if dir, err := f.dirs.OrgDir("org_c"); err != nil || dir != mapped {
		t.Fatalf("OrgDir(org_c) = %q, %v", dir, err)
	}
	loc, err := ParseDestination(Local, "file://"+f.root+"/org_c/")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.dirs.Check("org_c", loc); err == nil || !errors.Is(err, ErrInvalid) {
		t.Errorf("a mapped organization may still use <root>/<org>: %v", err)
	}
	b := f.open(t, "org_c", mapped+"/x/")
	if err := upload(b, "y.csv"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(mapped, "x", "y.csv")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mapped export: %v, %v", fi, err)
	}
	if _, err := (LocalDirs{}).OrgDir("org_a"); err == nil {
		t.Error("no root and no mapping: OrgDir succeeded")
	}
}

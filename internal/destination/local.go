package destination

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"path"
	"path/filepath"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/gcerrors"
)

// LocalDirs says where each organization's LOCAL destinations may lie:
// <Root>/<org id>/, or the directory Map names for the organization. One
// organization's admin must never be able to write into another's exports,
// so the shared root itself is no valid destination.
type LocalDirs struct {
	Root string            // --local-root (absolute)
	Map  map[string]string // --local-root-map: org id -> absolute directory, overriding <Root>/<org id>
}

// OrgDir returns the clean absolute directory (without trailing "/") under
// which orgID's LOCAL destinations must lie.
func (d LocalDirs) OrgDir(orgID string) (string, error) {
	if orgID == "" || orgID == "." || orgID == ".." || strings.ContainsAny(orgID, "/\\\x00") {
		return "", fmt.Errorf("organization id %q cannot name a directory", orgID)
	}
	if dir, ok := d.Map[orgID]; ok {
		return filepath.Clean(dir), nil
	}
	if d.Root == "" {
		return "", errors.New("the server has no --local-root for LOCAL destinations")
	}
	return filepath.Join(d.Root, orgID), nil
}

// Check tells whether the LOCAL location lies under orgID's directory, by
// its path alone; symbolic links are checked when the bucket is used.
func (d LocalDirs) Check(orgID string, loc Location) error {
	dir, err := d.OrgDir(orgID)
	if err != nil {
		return invalid("%s", err)
	}
	if !strings.HasPrefix(loc.Path, strings.TrimSuffix(dir, "/")+"/") {
		return invalid("must lie under this organization's directory file://%s/ (LOCAL destinations are separate per organization)", strings.TrimSuffix(dir, "/"))
	}
	return nil
}

// openLocal opens a LOCAL destination as a bucket whose keys are relative
// to the destination directory. Every file operation goes through an
// os.Root on the organization's directory, so neither ".." nor a symbolic
// link (to another organization's directory or anywhere else) can lead a
// write outside it, whatever was planted on disk after the integration was
// saved.
func openLocal(base Location, orgID string, dirs LocalDirs) (*blob.Bucket, error) {
	if err := dirs.Check(orgID, base); err != nil {
		// Integrations saved before directories were per organization.
		return nil, fmt.Errorf("LOCAL destination %s is refused: it %w; edit the integration's destination", base, err)
	}
	dir, _ := dirs.OrgDir(orgID)
	root, err := dirs.openOrg(orgID, dir)
	if err != nil {
		return nil, err
	}
	return blob.NewBucket(&localBucket{root: root, prefix: strings.TrimPrefix(base.Path, dir+"/")}), nil
}

// openOrg opens (creating it 0700 if absent) the organization's directory.
// Under the shared root the directory itself must not be a symbolic link:
// os.Root would follow one that stays inside the root, e.g. into another
// organization's directory.
func (d LocalDirs) openOrg(orgID, dir string) (*os.Root, error) {
	if _, mapped := d.Map[orgID]; mapped {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating the organization's LOCAL directory: %w", err)
		}
		return os.OpenRoot(dir)
	}
	top, err := os.OpenRoot(d.Root)
	if err != nil {
		return nil, fmt.Errorf("opening --local-root: %w", err)
	}
	defer top.Close()
	if err := top.Mkdir(orgID, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("creating the organization's LOCAL directory: %w", err)
	}
	fi, err := top.Lstat(orgID)
	if err != nil {
		return nil, fmt.Errorf("the organization's LOCAL directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("the organization's LOCAL directory %s is not a directory (symbolic links are not followed)", dir)
	}
	r, err := top.OpenRoot(orgID)
	if err != nil {
		return nil, fmt.Errorf("opening the organization's LOCAL directory: %w", err)
	}
	// The entry could have been swapped for a link between Lstat and open.
	if ri, err := r.Stat("."); err != nil || !os.SameFile(fi, ri) {
		r.Close()
		return nil, fmt.Errorf("the organization's LOCAL directory %s changed while it was opened", dir)
	}
	return r, nil
}

var (
	errUnimplemented = errors.New("not supported for LOCAL destinations")
	errExists        = errors.New("the object already exists")
	errBadKey        = errors.New("invalid LOCAL object name")
)

// escapeError is a path that os.Root refused because it leads outside the
// organization's directory.
type escapeError struct{ name string }

func (e *escapeError) Error() string {
	return fmt.Sprintf("%s leads outside the organization's LOCAL directory (symbolic links and \"..\" out of it are not followed)", e.name)
}

// localBucket is a gocloud blob driver over an os.Root. Objects are plain
// files (0600, directories 0700) with no metadata sidecar; a write goes to a
// temporary file in the object's directory, renamed into place on success,
// so an object appears only complete.
type localBucket struct {
	root   *os.Root
	prefix string // the destination directory relative to root: "" or "a/b/"
}

var _ driver.Bucket = (*localBucket)(nil)

// name maps a key to its path in the root. Keys come from validated URIs;
// this is a second line behind os.Root, which refuses escapes anyway.
func (b *localBucket) name(key string) (string, error) {
	bad := key == "" || strings.HasPrefix(key, "/") || strings.ContainsAny(key, "\\\x00")
	for _, s := range strings.Split(key, "/") {
		bad = bad || s == "" || s == "." || s == ".."
	}
	if bad {
		return "", fmt.Errorf("%w: %q (absolute names, empty, \".\" and \"..\" segments are refused)", errBadKey, key)
	}
	return b.prefix + key, nil
}

// pathErr turns os.Root's refusal of an escaping path into escapeError.
func pathErr(name string, err error) error {
	// os does not export its "path escapes from parent" error.
	if err != nil && strings.Contains(err.Error(), "path escapes from parent") {
		return &escapeError{name: name}
	}
	return err
}

func (b *localBucket) ErrorCode(err error) gcerrors.ErrorCode {
	var esc *escapeError
	switch {
	case errors.Is(err, errUnimplemented):
		return gcerrors.Unimplemented
	case errors.Is(err, errExists):
		return gcerrors.FailedPrecondition
	case errors.Is(err, errBadKey):
		return gcerrors.InvalidArgument
	case errors.As(err, &esc), errors.Is(err, fs.ErrPermission):
		return gcerrors.PermissionDenied
	case errors.Is(err, fs.ErrNotExist):
		return gcerrors.NotFound
	}
	return gcerrors.Unknown
}

func (b *localBucket) As(any) bool { return false }

func (b *localBucket) ErrorAs(err error, i any) bool { return errors.As(err, i) }

// stat returns the object's file info; a directory is no object.
func (b *localBucket) stat(key string) (string, fs.FileInfo, error) {
	name, err := b.name(key)
	if err != nil {
		return "", nil, err
	}
	fi, err := b.root.Stat(name)
	if err != nil {
		return "", nil, pathErr(name, err)
	}
	if fi.IsDir() {
		return "", nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return name, fi, nil
}

func contentTypeOf(name string) string {
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

func (b *localBucket) Attributes(_ context.Context, key string) (*driver.Attributes, error) {
	name, fi, err := b.stat(key)
	if err != nil {
		return nil, err
	}
	return &driver.Attributes{ContentType: contentTypeOf(name), ModTime: fi.ModTime(), Size: fi.Size()}, nil
}

func (b *localBucket) ListPaged(context.Context, *driver.ListOptions) (*driver.ListPage, error) {
	return nil, errUnimplemented
}

func (b *localBucket) NewRangeReader(_ context.Context, key string, offset, length int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	name, err := b.name(key)
	if err != nil {
		return nil, err
	}
	f, err := b.root.Open(name)
	if err != nil {
		return nil, pathErr(name, err)
	}
	fi, err := f.Stat()
	if err == nil && fi.IsDir() {
		err = &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	if err == nil && offset > 0 {
		_, err = f.Seek(offset, io.SeekStart)
	}
	if err == nil && opts.BeforeRead != nil {
		err = opts.BeforeRead(func(any) bool { return false })
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	var r io.Reader = f
	if length >= 0 {
		r = io.LimitReader(f, length)
	}
	return &localReader{f: f, r: r, attrs: driver.ReaderAttributes{ContentType: contentTypeOf(name), ModTime: fi.ModTime(), Size: fi.Size()}}, nil
}

type localReader struct {
	f     *os.File
	r     io.Reader
	attrs driver.ReaderAttributes
}

func (r *localReader) Read(p []byte) (int, error)           { return r.r.Read(p) }
func (r *localReader) Close() error                         { return r.f.Close() }
func (r *localReader) Attributes() *driver.ReaderAttributes { return &r.attrs }
func (r *localReader) As(any) bool                          { return false }
func (b *localBucket) SignedURL(context.Context, string, *driver.SignedURLOptions) (string, error) {
	return "", errUnimplemented
}

func (b *localBucket) Copy(context.Context, string, string, *driver.CopyOptions) error {
	return errUnimplemented
}

// localTmpDir holds in-progress writes, relative to the organization's root.
const localTmpDir = ".auditexport-tmp"

func (b *localBucket) NewTypedWriter(ctx context.Context, key, _ string, opts *driver.WriterOptions) (driver.Writer, error) {
	name, err := b.name(key)
	if err != nil {
		return nil, err
	}
	dir := path.Dir(name)
	if err := b.root.MkdirAll(dir, 0o700); err != nil {
		return nil, pathErr(name, err)
	}
	// Temp files live in one hidden directory of the organization's root,
	// not next to the objects: a process killed mid-write leaves its temp
	// file there, never among the exports a customer reads.
	if err := b.root.MkdirAll(localTmpDir, 0o700); err != nil {
		return nil, pathErr(name, err)
	}
	suffix := make([]byte, 8)
	_, _ = rand.Read(suffix)
	tmp := path.Join(localTmpDir, hex.EncodeToString(suffix)+".tmp")
	f, err := b.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, pathErr(name, err)
	}
	w := &localWriter{ctx: ctx, root: b.root, f: f, tmp: tmp, name: name, ifNotExist: opts.IfNotExist}
	// The umask may only narrow the mode given to open; set it exactly.
	err = f.Chmod(0o600)
	if err == nil && opts.BeforeWrite != nil {
		err = opts.BeforeWrite(func(any) bool { return false })
	}
	if err != nil {
		w.discard()
		return nil, err
	}
	return w, nil
}

type localWriter struct {
	ctx        context.Context
	root       *os.Root
	f          *os.File
	tmp, name  string
	ifNotExist bool
	failed     error // a write error: the object must not appear
}

func (w *localWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		w.failed = err
	}
	return n, err
}

// Upload implements driver.Uploader (the path bucket.Upload takes).
func (w *localWriter) Upload(r io.Reader) error {
	_, err := io.Copy(w.f, r)
	if err != nil {
		w.failed = err
	}
	return err
}

func (w *localWriter) discard() {
	_ = w.f.Close()
	_ = w.root.Remove(w.tmp)
}

// Close publishes the object unless the write failed or was canceled.
func (w *localWriter) Close() error {
	err := w.failed
	if err == nil {
		err = w.ctx.Err()
	}
	if err == nil {
		err = w.f.Sync()
	}
	if err != nil {
		w.discard()
		return err
	}
	if err := w.f.Close(); err != nil {
		_ = w.root.Remove(w.tmp)
		return err
	}
	if w.ifNotExist {
		// Conditional create, atomic: link(2) fails with EEXIST when the
		// name exists (a check-then-rename would let two writers both
		// "create" it, the second replacing the first).
		err := w.root.Link(w.tmp, w.name)
		_ = w.root.Remove(w.tmp)
		if errors.Is(err, fs.ErrExist) {
			return errExists
		}
		return pathErr(w.name, err)
	}
	if err := w.root.Rename(w.tmp, w.name); err != nil {
		_ = w.root.Remove(w.tmp)
		return pathErr(w.name, err)
	}
	return nil
}

func (b *localBucket) Delete(_ context.Context, key string, _ *driver.DeleteOptions) error {
	name, err := b.name(key)
	if err != nil {
		return err
	}
	fi, err := b.root.Lstat(name)
	if err != nil {
		return pathErr(name, err)
	}
	if fi.IsDir() {
		return &fs.PathError{Op: "delete", Path: name, Err: fs.ErrNotExist}
	}
	return pathErr(name, b.root.Remove(name))
}

func (b *localBucket) Close() error { return b.root.Close() }

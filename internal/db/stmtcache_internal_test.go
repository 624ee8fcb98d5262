package db

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"modernc.org/sqlite"

	"github.com/auditexport/auditexport/internal/tenant"
)

// openCached opens a SQLite database through Open (the statement cache in
// place) with a pool of one connection, so every statement meets the same
// cache.
func openCached(t *testing.T) (*sql.DB, func() (hits, misses int64, size int)) {
	t.Helper()
	ctx := tenant.System(context.Background())
	d, err := Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "stmt.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	d.SQL.SetMaxOpenConns(1)
	stats := func() (hits, misses int64, size int) {
		c, err := d.SQL.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		if err := c.Raw(func(dc any) error {
			cc, ok := dc.(*cachedConn)
			if !ok {
				return fmt.Errorf("SQLite connection is %T, not the statement cache", dc)
			}
			hits, misses, size = cc.stats()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := d.SQL.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)`); err != nil {
		t.Fatal(err)
	}
	return d.SQL, stats
}

// TestStmtCacheReuses: a statement run again is found prepared, and gives
// the rows of its new arguments.
func TestStmtCacheReuses(t *testing.T) {
	db, stats := openCached(t)
	ctx := context.Background()
	for i := range 10 {
		if _, err := db.ExecContext(ctx, `INSERT INTO t (id, name) VALUES (?, ?)`, i, fmt.Sprintf("n%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		var name string
		if err := db.QueryRowContext(ctx, `SELECT name FROM t WHERE id = ?`, i).Scan(&name); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("n%d", i); name != want {
			t.Fatalf("id %d: name %q, want %q", i, name, want)
		}
	}
	hits, misses, _ := stats()
	if misses != 2 || hits != 18 {
		t.Fatalf("hits %d misses %d, want 18 and 2 (two statements, ten runs each)", hits, misses)
	}
}

// TestStmtCacheNestedUse: the same text run while a result set of it is
// still open (a query inside a loop over another's rows, in a transaction)
// gets a statement of its own; both result sets stay right.
func TestStmtCacheNestedUse(t *testing.T) {
	db, _ := openCached(t)
	ctx := context.Background()
	for i := range 5 {
		if _, err := db.ExecContext(ctx, `INSERT INTO t (id, name) VALUES (?, ?)`, i, fmt.Sprintf("n%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	const q = `SELECT id, name FROM t WHERE id >= ? ORDER BY id`
	outer, err := tx.QueryContext(ctx, q, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for outer.Next() {
		var id int
		var name string
		if err := outer.Scan(&id, &name); err != nil {
			t.Fatal(err)
		}
		inner, err := tx.QueryContext(ctx, q, id)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for inner.Next() {
			n++
		}
		if err := inner.Close(); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s:%d", name, n))
	}
	if err := outer.Err(); err != nil {
		t.Fatal(err)
	}
	if err := outer.Close(); err != nil {
		t.Fatal(err)
	}
	if want := "n0:5 n1:4 n2:3 n3:2 n4:1"; strings.Join(got, " ") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, " "), want)
	}
}

// TestStmtCacheAfterError: a statement that failed (a unique constraint)
// is dropped; the same text runs again correctly, and a failing query
// reports its own error.
func TestStmtCacheAfterError(t *testing.T) {
	db, stats := openCached(t)
	ctx := context.Background()
	const ins = `INSERT INTO t (id, name) VALUES (?, ?)`
	if _, err := db.ExecContext(ctx, ins, 1, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, ins, 2, "a"); err == nil || !strings.Contains(err.Error(), "UNIQUE") {
		t.Fatalf("duplicate name: err %v, want a UNIQUE constraint error", err)
	}
	if _, err := db.ExecContext(ctx, ins, 2, "b"); err != nil {
		t.Fatalf("the same insert after a failed one: %v", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("count %d (%v), want 2", n, err)
	}
	if _, _, size := stats(); size > 3 {
		t.Fatalf("%d statements kept, want at most 3", size)
	}
	if err := db.QueryRowContext(ctx, `SELECT nosuchcolumn FROM t`).Scan(&n); err == nil || !strings.Contains(err.Error(), "nosuchcolumn") {
		t.Fatalf("bad query: err %v, want one naming the column", err)
	}
}

// TestStmtCacheBounded: many distinct texts keep at most stmtCacheSize
// statements; scripts and DDL are never kept.
func TestStmtCacheBounded(t *testing.T) {
	db, stats := openCached(t)
	ctx := context.Background()
	for i := range stmtCacheSize + 50 {
		var x int
		if err := db.QueryRowContext(ctx, fmt.Sprintf(`SELECT %d`, i)).Scan(&x); err != nil || x != i {
			t.Fatalf("select %d: %d, %v", i, x, err)
		}
	}
	if _, _, size := stats(); size != stmtCacheSize {
		t.Fatalf("%d statements kept, want %d", size, stmtCacheSize)
	}
	for _, q := range []string{"CREATE TABLE u (x)", "INSERT INTO u VALUES (1); INSERT INTO u VALUES (2)", "PRAGMA user_version", strings.Repeat(" ", stmtCacheMaxLen) + "SELECT 1"} {
		if cacheable(q) {
			t.Errorf("cacheable(%.40q) = true", q)
		}
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%.40q: %v", q, err)
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM u`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("script: %d rows (%v), want 2", n, err)
	}
}

// TestStmtCacheSchemaChange: a cached statement sees a column added after
// it was prepared (SQLite re-prepares it), as migrations need.
func TestStmtCacheSchemaChange(t *testing.T) {
	db, _ := openCached(t)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `INSERT INTO t (id, name) VALUES (1, 'a')`); err != nil {
		t.Fatal(err)
	}
	const q = `SELECT * FROM t WHERE id = 1`
	cols := func() []string {
		rows, err := db.QueryContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = rows.Close() }()
		c, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := cols(); len(c) != 2 {
		t.Fatalf("columns %v", c)
	}
	if _, err := db.ExecContext(ctx, `ALTER TABLE t ADD COLUMN extra TEXT DEFAULT 'x'`); err != nil {
		t.Fatal(err)
	}
	if c := cols(); len(c) != 3 || c[2] != "extra" {
		t.Fatalf("columns after ALTER TABLE %v, want id, name, extra", c)
	}
}

// TestStmtCacheMemoryBounded: bulk inserts of 1 to 30 rows (distinct
// texts, ~15 KB prepared for one row, more for each further row: about
// 1.3 MB held together) keep a connection's prepared statements within
// stmtCacheBytes, give or take the statement just run.
func TestStmtCacheMemoryBounded(t *testing.T) {
	db, _ := openCached(t)
	ctx := context.Background()
	cols := make([]string, 16)
	for i := range cols {
		cols[i] = fmt.Sprintf("c%d", i)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE wide (id INTEGER PRIMARY KEY, `+strings.Join(cols, " TEXT, ")+` TEXT)`); err != nil {
		t.Fatal(err)
	}
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	maxUsed := 0
	for n := 1; n <= 30; n++ {
		q := `INSERT INTO wide (` + strings.Join(cols, ", ") + `) VALUES ` + strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
		if !cacheable(q) {
			t.Fatalf("%d rows: %d bytes of SQL, not cacheable: the test no longer fills the cache", n, len(q))
		}
		args := make([]any, n*len(cols))
		for i := range args {
			args[i] = fmt.Sprint(i)
		}
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Raw(func(dc any) error {
			cc := dc.(*cachedConn)
			if cc.status == nil {
				return fmt.Errorf("connection %T without SQLite's memory status", cc.sqliteConn)
			}
			used, _, err := cc.status.Status(sqlite.DBStatusStmtUsed, false)
			maxUsed = max(maxUsed, used)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
	}
	if limit := stmtCacheBytes + 128<<10; maxUsed > limit {
		t.Fatalf("prepared statements held %d bytes, want at most %d", maxUsed, limit)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM wide`).Scan(&n); err != nil || n != 30*31/2 {
		t.Fatalf("%d rows (%v), want %d", n, err, 30*31/2)
	}
}

package db

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
	"reflect"
	"strings"
	"sync"

	"modernc.org/sqlite"
)

// SQLite statement cache.
//
// ent sends every statement as text (no database/sql Prepare), and the
// SQLite driver prepares each one anew: parses, resolves and plans it, then
// finalizes it after one execution. For the API's short reads that was the
// largest single cost of a call (a server CPU profile of GetSchedule at
// c=16: 28% in sqlite3_prepare_v2, most of it the parser). PostgreSQL needs
// no such layer: pgx caches prepared statements per connection itself.
//
// cachingConnector wraps each connection the SQLite driver opens so that
// the statements it runs most often stay prepared: a bounded LRU of
// prepared statements per connection, keyed by the SQL text. A statement is
// reused only when it is not in use: database/sql may have a result set of
// one statement open while the same text runs again on the connection (a
// query inside a loop over another's rows in a transaction), and that second
// run gets a statement of its own, as before. SQLite re-prepares a cached
// statement by itself when the schema changed (sqlite3_prepare_v2), so
// migrations need nothing.

// stmtCacheSize bounds the prepared statements kept per connection. The hot
// set is small (the key lookup, a row by id, a page of a list, the
// audit row's insert for a few batch sizes, a run's start and outcome);
// IN lists and bulk inserts of varying length produce many texts, which the
// LRU evicts.
const stmtCacheSize = 128

// stmtCacheBytes bounds the memory of a connection's prepared statements
// (SQLite's own count, SQLITE_DBSTATUS_STMT_USED), so the cache costs at most
// a few MiB for the pool: a one-row audit insert holds ~15 KB prepared, a
// 20-row one ~50 KB, and 79 statements of up to 4 KB of text held 5 MB.
const stmtCacheBytes = 512 << 10

// stmtCacheMaxLen: longer statements (bulk inserts of many rows) are not
// kept: each is rare, and prepared they hold the most memory.
const stmtCacheMaxLen = 2048

// sqliteConn is what every connection of modernc.org/sqlite implements; a
// wrapper must forward all of it (see sqlite.NewConnector).
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// sqliteStmt is what a statement prepared by modernc.org/sqlite implements.
type sqliteStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

// cachingConnector opens connections through base and keeps their
// statements prepared.
type cachingConnector struct {
	driver.Connector
	size  int // statements kept per connection
	bytes int // memory of prepared statements kept per connection
}

func (c cachingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := conn.(sqliteConn)
	if !ok {
		return conn, nil // not the driver this was written for: no cache
	}
	cc := &cachedConn{sqliteConn: sc, size: c.size, byText: map[string]*list.Element{}, lru: list.New()}
	if st, ok := conn.(sqlite.DBStatus); ok && c.bytes > 0 {
		cc.status, cc.bytes = st, c.bytes
	}
	return cc, nil
}

// cachedConn is one SQLite connection with its prepared statements.
type cachedConn struct {
	sqliteConn
	size   int
	status sqlite.DBStatus // nil: the memory bound is not checked
	bytes  int

	// database/sql uses a connection from one goroutine at a time (closing
	// a result set included); the mutex guards the cache regardless.
	mu     sync.Mutex
	byText map[string]*list.Element // of *cachedStmt
	lru    *list.List               // front: most recently used
	hits   int64
	misses int64
}

type cachedStmt struct {
	text string
	st   sqliteStmt
	busy bool // a result set of it is open
}

// Unwrap returns the driver's connection (sqlite.Limit and other helpers
// of the driver look through wrappers this way).
func (c *cachedConn) Unwrap() driver.Conn { return c.sqliteConn }

// cacheable: single data statements only. Scripts (a ';') are run by the
// driver statement by statement, and DDL, PRAGMAs and transaction control
// gain nothing.
func cacheable(query string) bool {
	if len(query) > stmtCacheMaxLen || strings.IndexByte(query, ';') >= 0 {
		return false
	}
	q := strings.TrimLeft(query, " \t\r\n")
	if len(q) < 6 {
		return false
	}
	switch strings.ToUpper(q[:6]) {
	case "SELECT", "INSERT", "UPDATE", "DELETE":
		return true
	}
	return strings.EqualFold(q[:4], "WITH")
}

// acquire returns the prepared statement of query, marked busy, or nil when
// the query should run uncached (not cacheable, its statement in use, or
// preparing it failed: the uncached run reports that error).
func (c *cachedConn) acquire(ctx context.Context, query string) *cachedStmt {
	if !cacheable(query) {
		return nil
	}
	c.mu.Lock()
	if e, ok := c.byText[query]; ok {
		s := e.Value.(*cachedStmt)
		if s.busy {
			c.mu.Unlock()
			return nil
		}
		s.busy = true
		c.lru.MoveToFront(e)
		c.hits++
		c.mu.Unlock()
		return s
	}
	c.misses++
	c.mu.Unlock()
	ds, err := c.sqliteConn.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	st, ok := ds.(sqliteStmt)
	if !ok {
		_ = ds.Close()
		return nil
	}
	s := &cachedStmt{text: query, st: st, busy: true}
	c.mu.Lock()
	c.byText[query] = c.lru.PushFront(s)
	c.mu.Unlock()
	c.evict()
	return s
}

// evict drops the least recently used statements not in use while the
// cache holds more than size statements or more than bytes of prepared
// statements.
func (c *cachedConn) evict() {
	over := func() bool {
		if c.lru.Len() > c.size {
			return true
		}
		if c.status == nil {
			return false
		}
		used, _, err := c.status.Status(sqlite.DBStatusStmtUsed, false)
		return err == nil && used > c.bytes
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.lru.Back(); e != nil && over(); {
		prev := e.Prev()
		if old := e.Value.(*cachedStmt); !old.busy {
			c.lru.Remove(e)
			delete(c.byText, old.text)
			_ = old.st.Close()
		}
		e = prev
	}
}

// release marks s free again, or drops it after an error: a statement whose
// run failed (interrupted, a constraint, a busy database) is not trusted
// with the next run.
func (c *cachedConn) release(s *cachedStmt, failed bool) {
	c.mu.Lock()
	s.busy = false
	if failed {
		if e, ok := c.byText[s.text]; ok && e.Value == s {
			c.lru.Remove(e)
			delete(c.byText, s.text)
		}
	}
	c.mu.Unlock()
	if failed {
		_ = s.st.Close()
	}
}

func (c *cachedConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	s := c.acquire(ctx, query)
	if s == nil {
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	r, err := s.st.QueryContext(ctx, args)
	if err != nil {
		c.release(s, true)
		return nil, err
	}
	return &cachedRows{rows: r, conn: c, stmt: s}, nil
}

func (c *cachedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	s := c.acquire(ctx, query)
	if s == nil {
		return c.sqliteConn.ExecContext(ctx, query, args)
	}
	res, err := s.st.ExecContext(ctx, args)
	c.release(s, err != nil)
	return res, err
}

// Close finalizes the cached statements, then closes the connection.
func (c *cachedConn) Close() error {
	c.mu.Lock()
	stmts := make([]*cachedStmt, 0, c.lru.Len())
	for e := c.lru.Front(); e != nil; e = e.Next() {
		stmts = append(stmts, e.Value.(*cachedStmt))
	}
	c.lru.Init()
	clear(c.byText)
	c.mu.Unlock()
	var errs []error
	for _, s := range stmts {
		errs = append(errs, s.st.Close())
	}
	errs = append(errs, c.sqliteConn.Close())
	return errors.Join(errs...)
}

// stats: statements found prepared and statements prepared (tests).
func (c *cachedConn) stats() (hits, misses int64, size int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses, c.lru.Len()
}

// driverRows is what the driver's result sets implement; cachedRows
// forwards all of it (database/sql's ColumnTypes reads the column types).
type driverRows interface {
	driver.Rows
	driver.RowsColumnTypeDatabaseTypeName
	driver.RowsColumnTypeLength
	driver.RowsColumnTypeNullable
	driver.RowsColumnTypePrecisionScale
	driver.RowsColumnTypeScanType
}

// cachedRows is a result set of a cached statement: closing it resets the
// statement (the driver does) and frees it for the next run.
type cachedRows struct {
	rows   driver.Rows
	conn   *cachedConn
	stmt   *cachedStmt
	closed bool
}

func (r *cachedRows) Columns() []string              { return r.rows.Columns() }
func (r *cachedRows) Next(dest []driver.Value) error { return r.rows.Next(dest) }

func (r *cachedRows) Close() error {
	err := r.rows.Close()
	if !r.closed {
		r.closed = true
		r.conn.release(r.stmt, err != nil)
	}
	return err
}

func (r *cachedRows) ColumnTypeDatabaseTypeName(i int) string {
	if x, ok := r.rows.(driverRows); ok {
		return x.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *cachedRows) ColumnTypeLength(i int) (int64, bool) {
	if x, ok := r.rows.(driverRows); ok {
		return x.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *cachedRows) ColumnTypeNullable(i int) (bool, bool) {
	if x, ok := r.rows.(driverRows); ok {
		return x.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *cachedRows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	if x, ok := r.rows.(driverRows); ok {
		return x.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}

func (r *cachedRows) ColumnTypeScanType(i int) reflect.Type {
	if x, ok := r.rows.(driverRows); ok {
		return x.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

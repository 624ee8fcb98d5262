// Package db opens the service's database (SQLite by default, PostgreSQL for
// many replicas), applies the schema, and seeds built-in rows.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"entgo.io/ent/dialect/sql/schema"
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	"modernc.org/sqlite"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/ent/migrate"
	_ "github.com/auditexport/auditexport/ent/runtime" // defaults, hooks and interceptors of the schema
)

// DB is an open database.
type DB struct {
	Client  *ent.Client
	SQL     *sql.DB
	Dialect string // dialect.SQLite or dialect.Postgres
	DSN     string // as given to Open (may hold a password: never log it)
	// SQLitePath is the SQLite database file ("" on PostgreSQL and for
	// ":memory:"), for readers that open it themselves (auditlog.Stream).
	SQLitePath string
	// Runs records export runs' starts and outcomes, a few statements
	// per group-committed batch (see Runs).
	Runs *Runs
	gate *gatedDriver // SQLite: the client's driver (see gate.go)
}

// sqlitePragmas are required: foreign keys (ent migrations need them), a
// busy timeout so concurrent writers wait instead of failing, and WAL so
// readers never block the writer.
const sqlitePragmas = "_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"

// Open opens dsn: "sqlite://<path>" (or "sqlite:<path>", a bare file path) or "postgres://...".
func Open(ctx context.Context, dsn string) (*DB, error) {
	drv, source, dia, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	var sqlitePath string
	if dia == dialect.SQLite {
		if source != ":memory:" {
			sqlitePath = source
		}
		if dir := filepath.Dir(source); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("create database directory: %w", err)
			}
		}
		if source != ":memory:" {
			if err := restrictSQLiteFiles(source); err != nil {
				return nil, err
			}
		}
		source = "file:" + source + "?" + sqlitePragmas
	}
	sdb, err := openSQL(drv, source, dia)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if dia != dialect.SQLite {
		sdb.SetConnMaxIdleTime(5 * time.Minute)
	}
	setPool(sdb, dia, 0)
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := sdb.PingContext(pctx); err != nil {
		_ = sdb.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	var drvEnt dialect.Driver = entsql.OpenDB(dia, sdb)
	var gate *gatedDriver
	if dia == dialect.SQLite {
		gate = newGatedDriver(drvEnt.(*entsql.Driver))
		drvEnt = gate
	}
	client := ent.NewClient(ent.Driver(drvEnt))
	parallel := 1
	if dia == dialect.Postgres {
		parallel = pgParallelWrites
	}
	return &DB{Client: client, SQL: sdb, Dialect: dia, DSN: dsn, SQLitePath: sqlitePath, Runs: newRuns(client, dia, parallel), gate: gate}, nil
}

// openSQL opens the pool; SQLite's connections keep their statements
// prepared (see stmtcache.go).
func openSQL(drv, source, dia string) (*sql.DB, error) {
	if dia != dialect.SQLite {
		return sql.Open(drv, source)
	}
	base, err := sqlite.NewConnector(source)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(cachingConnector{Connector: base, size: stmtCacheSize, bytes: stmtCacheBytes}), nil
}

// pgParallelWrites: grouped writes in flight at once on PostgreSQL (see
// Runs), a fraction of the default pool.
const pgParallelWrites = 4

// DefaultMaxConns is the pool size when --db-max-conns is 0: on SQLite (one
// writer at a time) a small pool lets readers proceed in WAL mode while
// writes queue on busy_timeout; PostgreSQL serves concurrent writers.
func DefaultMaxConns(dia string) int {
	if dia == dialect.SQLite {
		return 8
	}
	return 20
}

// SetMaxConns sizes the pool: n connections at most (0: DefaultMaxConns),
// all of them kept open when idle. database/sql keeps only 2 idle
// connections by default, so under load every connection beyond the second
// was closed on release and opened again on the next request — on
// PostgreSQL a new backend process each time (~tens of ms), which was most
// of the scheduler's fan-out time (10,000 runs due at once: p99 65 s).
func (d *DB) SetMaxConns(n int) { setPool(d.SQL, d.Dialect, n) }

func setPool(sdb *sql.DB, dia string, n int) {
	if n <= 0 {
		n = DefaultMaxConns(dia)
	}
	sdb.SetMaxOpenConns(n)
	sdb.SetMaxIdleConns(n)
}

// restrictSQLiteFiles makes the database file owner-only (0600) before
// SQLite opens it: SQLite creates a new database 0644 (less the umask) and
// gives its -wal and -shm files the database file's mode, so creating the
// file ourselves covers all three. Existing files are narrowed too.
func restrictSQLiteFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open database file: %w", err)
	}
	err = f.Chmod(0o600)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restrict database file: %w", err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Chmod(path+suffix, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("restrict database file: %w", err)
		}
	}
	return nil
}

func parseDSN(dsn string) (driver, source, dia string, err error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		u, err := url.Parse(dsn)
		if err != nil {
			return "", "", "", fmt.Errorf("invalid --db: %w", err)
		}
		// pgx prepares statements once per connection, and after five
		// executions PostgreSQL may switch a prepared statement to a generic
		// plan that ignores the actual bounds — for the keyset batches of an
		// export that means scanning and sorting the whole table per batch.
		// Custom plans cost a planning step per query and keep exports linear.
		q := u.Query()
		if q.Get("plan_cache_mode") == "" {
			q.Set("plan_cache_mode", "force_custom_plan")
			u.RawQuery = q.Encode()
		}
		return "pgx", u.String(), dialect.Postgres, nil
	case strings.HasPrefix(dsn, "sqlite://"):
		return "sqlite", strings.TrimPrefix(dsn, "sqlite://"), dialect.SQLite, nil
	case strings.HasPrefix(dsn, "sqlite:"):
		return "sqlite", strings.TrimPrefix(dsn, "sqlite:"), dialect.SQLite, nil
	case strings.Contains(dsn, "://"):
		return "", "", "", fmt.Errorf("invalid --db %q: want sqlite://<path> or postgres://...", redactDSN(dsn))
	case dsn == "":
		return "", "", "", errors.New("--db is empty")
	default:
		return "sqlite", dsn, dialect.SQLite, nil
	}
}

// redactDSN hides a password in a DSN for error messages.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "<unparseable>"
	}
	return u.Redacted()
}

// createSchema applies ent's schema. ent's auto-migration only adds
// tables, columns and indexes (it never drops), so running it on a
// database of an earlier version is safe.
func (d *DB) createSchema(ctx context.Context) error {
	return d.Client.Schema.Create(ctx, migrate.WithForeignKeys(true), schema.WithDropColumn(false), schema.WithDropIndex(false))
}

// Close closes the database.
func (d *DB) Close() error { return d.Client.Close() }

package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/auditexport/auditexport/internal/db"

	_ "github.com/jackc/pgx/v5/stdlib" // pgx driver for the admin connection
)

// PGAdminDSN is where the PostgreSQL variants create their throw-away
// databases; AUDITEXPORT_TEST_POSTGRES overrides it.
func PGAdminDSN() string {
	if v := os.Getenv("AUDITEXPORT_TEST_POSTGRES"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// ForEachDB runs fn against a fresh, migrated SQLite file database and a
// fresh PostgreSQL database (skipped locally when none is reachable, fatal
// in CI so the PostgreSQL path can't silently go untested).
func ForEachDB(t *testing.T, fn func(t *testing.T, d *db.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLiteDB(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, PostgresDB(t)) })
}

// SQLiteDB opens a fresh, migrated SQLite file database.
func SQLiteDB(tb testing.TB) *db.DB {
	tb.Helper()
	return openMigrated(tb, "sqlite://"+filepath.Join(tb.TempDir(), "audit.db"))
}

// PostgresReachable says whether the PostgreSQL server of PGAdminDSN
// answers. Unreachable is fatal in CI (the PostgreSQL path must not go
// silently untested); locally it is logged and false (the caller skips).
func PostgresReachable(tb testing.TB) bool {
	tb.Helper()
	admin, err := sql.Open("pgx", PGAdminDSN())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err = admin.PingContext(ctx)
		cancel()
		_ = admin.Close()
	}
	if err == nil {
		return true
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("PostgreSQL not reachable in CI: %v", err)
	}
	tb.Logf("PostgreSQL not reachable (%v; set AUDITEXPORT_TEST_POSTGRES): PostgreSQL variants skipped", err)
	return false
}

// NewPostgresDatabase creates an empty throw-away database (name prefix +
// random) dropped, with its connections, at cleanup; it returns its DSN.
func NewPostgresDatabase(tb testing.TB, prefix string) string {
	tb.Helper()
	admin, err := sql.Open("pgx", PGAdminDSN())
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := prefix + hex.EncodeToString(rnd[:])
	if _, err := admin.ExecContext(context.Background(), "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		a, err := sql.Open("pgx", PGAdminDSN())
		if err != nil {
			tb.Error(err)
			return
		}
		defer func() { _ = a.Close() }()
		if _, err := a.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Error(err)
		}
	})
	return withDatabase(tb, PGAdminDSN(), name)
}

// PostgresDB creates a throw-away PostgreSQL database (dropped at cleanup),
// migrated; skipped locally when PostgreSQL is unreachable, fatal in CI.
func PostgresDB(tb testing.TB) *db.DB {
	tb.Helper()
	if !PostgresReachable(tb) {
		tb.SkipNow()
	}
	return openMigrated(tb, NewPostgresDatabase(tb, "ae_test_"))
}

// withDatabase replaces the database name in a postgres:// URL.
func withDatabase(tb testing.TB, dsn, name string) string {
	tb.Helper()
	i := strings.Index(dsn, "://")
	rest := dsn[i+3:]
	slash := strings.Index(rest, "/")
	if slash < 0 {
		tb.Fatalf("admin DSN %q has no database path", dsn)
	}
	q := ""
	if j := strings.Index(rest, "?"); j >= 0 {
		q = rest[j:]
	}
	return dsn[:i+3] + rest[:slash] + "/" + name + q
}

func openMigrated(tb testing.TB, dsn string) *db.DB {
	tb.Helper()
	ctx := context.Background()
	d, err := db.Open(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = d.Close() })
	if err := d.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	return d
}

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

// PostgresDB creates a throw-away PostgreSQL database (dropped at cleanup),
// migrated; skipped locally when PostgreSQL is unreachable, fatal in CI.
func PostgresDB(tb testing.TB) *db.DB {
	tb.Helper()
	ctx := context.Background()
	admin, err := sql.Open("pgx", PGAdminDSN())
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := admin.PingContext(pctx); err != nil {
		if os.Getenv("CI") == "" {
			tb.Skipf("PostgreSQL not reachable (%v); set AUDITEXPORT_TEST_POSTGRES", err)
		}
		tb.Fatalf("PostgreSQL not reachable in CI: %v", err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "ae_test_" + hex.EncodeToString(rnd[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
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
	return openMigrated(tb, withDatabase(tb, PGAdminDSN(), name))
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

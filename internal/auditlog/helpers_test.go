package auditlog

import (
	"testing"

	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/testenv"
)

// forEachDB runs fn against a fresh SQLite file database and a fresh
// PostgreSQL database (see testenv.ForEachDB).
func forEachDB(t *testing.T, fn func(t *testing.T, d *db.DB)) { testenv.ForEachDB(t, fn) }

func openSQLite(tb testing.TB) *db.DB { return testenv.SQLiteDB(tb) }

func openPostgres(tb testing.TB) *db.DB { return testenv.PostgresDB(tb) }

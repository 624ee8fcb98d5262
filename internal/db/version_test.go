package db_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestSchemaVersions, on SQLite and PostgreSQL: a new database is recorded
// at db.SchemaVersion without running data migrations; one from before
// versioning (no auditexport_schema) reads as version 1 and runs each newer
// step once; a database of a newer binary is refused with a message that
// says so, and is left as it was.
func TestSchemaVersions(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		version := func() int {
			t.Helper()
			v, err := d.SchemaVersion(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		if v := version(); v != db.SchemaVersion {
			t.Fatalf("new database: version %d, want %d", v, db.SchemaVersion)
		}
		ran := 0
		steps := []db.Step{{Version: db.SchemaVersion, Name: "count", Run: func(context.Context) error { ran++; return nil }}}
		testenv.Must(t, d.Migrate(ctx, steps...))
		if ran != 0 {
			t.Errorf("a step ran on a database already at its version (%d times)", ran)
		}

		// A database from before versioning.
		if _, err := d.SQL.ExecContext(ctx, `DROP TABLE auditexport_schema`); err != nil {
			t.Fatal(err)
		}
		if v := version(); v != 1 {
			t.Fatalf("unversioned database: version %d, want 1", v)
		}
		testenv.Must(t, d.Migrate(ctx, steps...))
		testenv.Must(t, d.Migrate(ctx, steps...))
		if ran != 1 || version() != db.SchemaVersion {
			t.Errorf("upgrade from 1: step ran %d times (want 1), version %d", ran, version())
		}
		// A failing step leaves the version where it was: the next start retries.
		testenv.Must(t, d.SetSchemaVersion(ctx, 1))
		boom := errors.New("boom")
		err := d.Migrate(ctx, db.Step{Version: db.SchemaVersion, Name: "fails", Run: func(context.Context) error { return boom }})
		if !errors.Is(err, boom) || version() != 1 {
			t.Errorf("failing step: %v, version %d; want the error and version 1", err, version())
		}

		// A newer binary's database.
		testenv.Must(t, d.SetSchemaVersion(ctx, db.SchemaVersion+1))
		err = d.Migrate(ctx, steps...)
		var newer *db.NewerSchemaError
		if !errors.As(err, &newer) || newer.Found != db.SchemaVersion+1 || !strings.Contains(err.Error(), "newer auditexport") {
			t.Fatalf("newer database: %v, want a NewerSchemaError", err)
		}
		if v := version(); v != db.SchemaVersion+1 {
			t.Errorf("refused database changed its version to %d", v)
		}
	})
}

// TestNewDatabaseVersion: Migrate on an empty database records
// db.SchemaVersion and runs no data migration.
func TestNewDatabaseVersion(t *testing.T) {
	d, err := db.Open(context.Background(), "sqlite://"+t.TempDir()+"/new.db")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ran := false
	if v, _ := d.SchemaVersion(context.Background()); v != 0 {
		t.Fatalf("empty database: version %d, want 0", v)
	}
	testenv.Must(t, d.Migrate(context.Background(), db.Step{Version: db.SchemaVersion, Run: func(context.Context) error { ran = true; return nil }}))
	if v, _ := d.SchemaVersion(context.Background()); v != db.SchemaVersion || ran {
		t.Errorf("new database: version %d, step ran %v", v, ran)
	}
}

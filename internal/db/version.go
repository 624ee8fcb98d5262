package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"entgo.io/ent/dialect"
)

// SchemaVersion is the version of the database this binary writes, kept
// in the one-row table auditexport_schema. Each version is a change a
// previous binary would misread; ent's additive migrations alone (a new
// column, table or index) do not need one.
//
//	1  every database from before versioning (no auditexport_schema table)
//	2  auditexport_schema exists; schedule crons follow cronie's day-field
//	   rules (a schedule saved at 1 is rewritten once to keep its fire times)
//	3  exports carry signed manifests chained per schedule (signing_keys,
//	   schedules.manifest_sequence/head): an older binary would write
//	   objects without manifests into a chain, which auditors would then
//	   see as missing, so it must refuse this database. No data step.
const SchemaVersion = 3

// migrationLockKey is the PostgreSQL advisory lock replicas take around
// Migrate, so one migrates and the others find the work done.
const migrationLockKey = 7_004_101

// Step is a data migration that brings a database from Version-1 to
// Version (e.g. rewriting stored values whose meaning changed). Steps run
// once, after the schema is created and before the version is recorded,
// only on databases older than Version (never on a new database).
type Step struct {
	Version int
	Name    string
	Run     func(ctx context.Context) error
}

// NewerSchemaError: the database was written by a newer binary. Starting
// anyway could misread or overwrite what it stored, so Migrate refuses.
type NewerSchemaError struct{ Found, Known int }

func (e *NewerSchemaError) Error() string {
	return fmt.Sprintf("the database's schema version is %d, newer than this binary's %d: it was written by a newer auditexport. "+
		"Refusing to start so nothing is misread or overwritten; run that version or a newer one, or restore the backup taken before the upgrade",
		e.Found, e.Known)
}

// Migrate brings the database to SchemaVersion: it refuses a database of a
// newer version (*NewerSchemaError), applies the schema (ent's
// auto-migration only adds tables, columns and indexes, never drops), runs
// the steps newer than the database's version in order, then records the
// version. It is idempotent and runs on every start; on PostgreSQL the
// replicas take turns under an advisory lock. A crash before the version
// is recorded runs the steps again on the next start, so steps must be
// idempotent.
func (d *DB) Migrate(ctx context.Context, steps ...Step) error {
	unlock, err := d.migrationLock(ctx)
	if err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	defer unlock()
	from, err := d.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if from > SchemaVersion {
		return &NewerSchemaError{Found: from, Known: SchemaVersion}
	}
	if err := d.createSchema(ctx); err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	if _, err := d.SQL.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS auditexport_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create auditexport_schema: %w", err)
	}
	for _, s := range steps {
		if from == 0 || s.Version <= from || s.Version > SchemaVersion {
			continue
		}
		if err := s.Run(ctx); err != nil {
			return fmt.Errorf("migrate to schema version %d (%s): %w", s.Version, s.Name, err)
		}
	}
	if from == SchemaVersion {
		return nil
	}
	return d.SetSchemaVersion(ctx, SchemaVersion)
}

// SetSchemaVersion records v (tests use it to stand for a newer binary).
func (d *DB) SetSchemaVersion(ctx context.Context, v int) error {
	_, err := d.SQL.ExecContext(ctx, fmt.Sprintf(`INSERT INTO auditexport_schema (id, version) VALUES (1, %d)
		ON CONFLICT (id) DO UPDATE SET version = excluded.version`, v))
	if err != nil {
		return fmt.Errorf("record schema version %d: %w", v, err)
	}
	return nil
}

// SchemaVersion reads the database's version: 0 for a new database (no
// tables yet), 1 for one from before versioning.
func (d *DB) SchemaVersion(ctx context.Context) (int, error) {
	exists := func(table string) (bool, error) {
		var q string
		if d.Dialect == dialect.Postgres {
			q = fmt.Sprintf(`SELECT to_regclass('%s') IS NOT NULL`, table)
		} else {
			q = fmt.Sprintf(`SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '%s'`, table)
		}
		var ok bool
		err := d.SQL.QueryRowContext(ctx, q).Scan(&ok)
		return ok, err
	}
	if ok, err := exists("auditexport_schema"); err != nil || ok {
		if err != nil {
			return 0, err
		}
		var v int
		err := d.SQL.QueryRowContext(ctx, `SELECT version FROM auditexport_schema WHERE id = 1`).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			return 1, nil // a crash between creating the table and recording
		}
		return v, err
	}
	if ok, err := exists("organizations"); err != nil || ok {
		return 1, err
	}
	return 0, nil
}

// migrationLock serialises Migrate across PostgreSQL replicas (a session
// advisory lock on a connection of its own); SQLite has one writer.
func (d *DB) migrationLock(ctx context.Context) (func(), error) {
	if d.Dialect != dialect.Postgres {
		return func() {}, nil
	}
	conn, err := d.SQL.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrationLockKey); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLockKey)
		_ = conn.Close()
	}, nil
}

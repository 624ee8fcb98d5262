package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"entgo.io/ent/dialect"

	"github.com/auditexport/auditexport/internal/db"
)

type backupCmd struct {
	dbFlags
	To string `name:"to" required:"" help:"File to write the copy of the SQLite database to (must not exist)."`
}

// Run writes a consistent copy of a live SQLite database with VACUUM INTO:
// one read transaction, so the copy is a snapshot even while the server
// writes (WAL mode). The copy is a complete database file, restored by
// putting it (with the master key) into a data dir as auditexport.db.
func (c *backupCmd) Run(ctx context.Context) error {
	to, err := filepath.Abs(c.To)
	if err != nil {
		return err
	}
	// VACUUM INTO accepts an empty file: create it 0600 first so the copy
	// (credentials, API key hashes) is never readable by others.
	f, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("--to %s already exists; choose a new file", to)
	} else if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	_ = f.Close()
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(to)
		}
	}()
	dsn := c.DB
	if dsn == "" {
		dsn = "sqlite://" + filepath.Join(c.DataDir, "auditexport.db")
	}
	// Open without migrating: a backup must not change the source.
	d, err := db.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer d.Close()
	if d.Dialect != dialect.SQLite {
		return errors.New("backup copies SQLite databases; for PostgreSQL use pg_dump (see README, Backup and restore)")
	}
	if _, err := d.SQL.ExecContext(ctx, "VACUUM INTO ?", to); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	ok = true
	fmt.Printf("database copied to %s\nit is useless without the master key file: back up %s too (separately)\n",
		to, filepath.Join(c.DataDir, "master.key"))
	return nil
}

package db

import (
	"context"
	"fmt"

	"github.com/auditexport/auditexport/ent"
)

// WithTx runs fn in a transaction, rolling back on error or panic.
func WithTx(ctx context.Context, db *ent.Client, fn func(tx *ent.Client) error) (err error) {
	tx, err := db.Tx(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if r := recover(); r != nil {
			_ = tx.Rollback()
			panic(r)
		}
	}()
	if err := fn(tx.Client()); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

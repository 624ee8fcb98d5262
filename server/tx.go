package server

import (
	"context"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/internal/db"
)

// withTx runs fn in a transaction, rolling back on error or panic.
func withTx(ctx context.Context, c *ent.Client, fn func(tx *ent.Client) error) error {
	return db.WithTx(ctx, c, fn)
}

package auditlog

import (
	"context"
	"testing"
	"time"

	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/testenv"
)

// forEachDB runs fn against a fresh SQLite file database and a fresh
// PostgreSQL database (see testenv.ForEachDB).
func forEachDB(t *testing.T, fn func(t *testing.T, d *db.DB)) { testenv.ForEachDB(t, fn) }

func openSQLite(tb testing.TB) *db.DB { return testenv.SQLiteDB(tb) }

func openPostgres(tb testing.TB) *db.DB { return testenv.PostgresDB(tb) }

// scan streams spec s (all rows, no window) and calls fn with each row's
// cells.
func scan(ctx context.Context, d *db.DB, s Spec, now time.Time, fn func(row [][]byte) error) error {
	cols, err := OutputColumns(s)
	if err != nil {
		return err
	}
	row := make([][]byte, len(cols))
	return Stream(ctx, d, s, now, 0, 0, NewBatch(cols), func(b *Batch) (*Batch, error) {
		for r := range b.Len() {
			for c := range row {
				row[c] = b.Cell(r, c)
			}
			if err := fn(row); err != nil {
				return nil, err
			}
		}
		b.Reset()
		return b, nil
	})
}

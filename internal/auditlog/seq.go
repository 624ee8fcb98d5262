package auditlog

import (
	"context"
	"fmt"

	"entgo.io/ent/dialect"

	"github.com/auditexport/auditexport/internal/db"
)

// seqLockKey is the PostgreSQL advisory lock that orders audit inserts
// against watermark reads (see StableSeq).
const seqLockKey = 7_004_202

// StableSeq returns an insert sequence W such that every audit row with
// id <= W is committed and visible: an export bounded by W never misses a
// row that commits later with a smaller id.
//
// Why this is exact rather than a time-based safety horizon:
//   - SQLite has one writer at a time and assigns the rowid inside the
//     write transaction, so ids become visible in order; MAX(id) is a
//     consistent prefix.
//   - PostgreSQL sequences hand out ids before commit, so id 100 can commit
//     after id 101. Every audit insert therefore holds
//     pg_advisory_xact_lock_shared(seqLockKey) for its transaction (see
//     Recorder and Seed), and StableSeq takes the same lock exclusively:
//     once granted, every insert that had already drawn an id has
//     committed, and every later insert draws a larger id. MAX(id) read
//     under the lock is then a prefix of the committed rows.
func StableSeq(ctx context.Context, d *db.DB) (int64, error) {
	tx, err := d.SQL.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	if d.Dialect == dialect.Postgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", seqLockKey); err != nil {
			return 0, fmt.Errorf("sequence lock: %w", err)
		}
	}
	var w int64
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(id), 0) FROM audit_logs").Scan(&w); err != nil {
		return 0, err
	}
	return w, tx.Commit()
}

// sharedSeqLock is executed first in every transaction that inserts audit rows.
const sharedSeqLockSQL = "SELECT pg_advisory_xact_lock_shared($1)"

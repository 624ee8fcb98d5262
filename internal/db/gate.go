package db

import (
	"context"
	"sync"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
)

// SQLite has one writer at a time, and every ent write is a transaction
// (BEGIN IMMEDIATE: _txlock=immediate). A second writer's BEGIN found the
// database locked and waited in SQLite's busy handler, which sleeps and
// polls (1, 2, 5, 10, 15, 20, 25 ms ... up to busy_timeout): it is not woken
// when the lock is released, so under concurrent writes most of a commit's
// latency was sleeping with the lock free. The gate queues this process's
// write transactions in Go instead: the next writer starts as soon as the
// previous one commits or rolls back. Readers are not gated (WAL). Writers
// in other processes (auditexport seed, a second server on the same file)
// still meet busy_timeout, and a writer that waits longer than gateWait —
// only a transaction held open that long, or a bug that writes outside the
// transaction it holds — begins anyway and meets busy_timeout as before,
// never a deadlock.
const gateWait = 10 * time.Second

// gatedDriver is entsql.Driver with its transactions passed through a gate
// of one.
type gatedDriver struct {
	*entsql.Driver
	gate chan struct{}
}

func newGatedDriver(d *entsql.Driver) *gatedDriver {
	return &gatedDriver{Driver: d, gate: make(chan struct{}, 1)}
}

// Tx begins a gated transaction.
func (d *gatedDriver) Tx(ctx context.Context) (dialect.Tx, error) {
	return d.BeginTx(ctx, nil)
}

// BeginTx waits for the gate (at most gateWait, or until ctx is done), then
// begins the transaction; the gate opens again when it commits or rolls back.
func (d *gatedDriver) BeginTx(ctx context.Context, opts *entsql.TxOptions) (dialect.Tx, error) {
	release := d.enter(ctx)
	tx, err := d.Driver.BeginTx(ctx, opts)
	if err != nil {
		release()
		return nil, err
	}
	return &gatedTx{Tx: tx.(*entsql.Tx), release: release}, nil
}

func (d *gatedDriver) enter(ctx context.Context) (release func()) {
	select {
	case d.gate <- struct{}{}:
		return func() { <-d.gate }
	default:
	}
	t := time.NewTimer(gateWait)
	defer t.Stop()
	select {
	case d.gate <- struct{}{}:
		return func() { <-d.gate }
	case <-ctx.Done(): // BeginTx fails with ctx's error
	case <-t.C: // begin ungated: busy_timeout decides
	}
	return func() {}
}

// gatedTx opens the gate once, when the transaction ends.
type gatedTx struct {
	*entsql.Tx
	once    sync.Once
	release func()
}

func (t *gatedTx) Commit() error {
	defer t.once.Do(t.release)
	return t.Tx.Commit()
}

func (t *gatedTx) Rollback() error {
	defer t.once.Do(t.release)
	return t.Tx.Rollback()
}

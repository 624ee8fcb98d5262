package db

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/auditexport/auditexport/ent"
	"github.com/auditexport/auditexport/internal/tenant"
)

// Group commits the writes of concurrent callers together. On SQLite (one
// writer at a time, a commit per write) concurrent writers queue behind
// each other's commits; on PostgreSQL each commit is a round trip and a WAL
// flush, and each writer holds a pooled connection for it. Items added while
// a write is in flight are written together by the next one (at most max
// per write). A caller returns only after the write holding its item
// succeeded or failed — nothing acknowledged can be lost; what a crash loses
// is what was never acknowledged, exactly as with a commit per item — and a
// caller's error is its own: when a batch fails, its items are written again
// one at a time.
//
// The queue is bounded by the callers themselves (each waits for its item).
// The first caller to find no write running writes (its own item first); a
// write that leaves items queued hands the next batch to a new goroutine, so
// no caller keeps writing other callers' items after its own was written.
type Group[T any] struct {
	write    func([]T) error
	max      int
	parallel int // writes at once

	mu      sync.Mutex
	queue   []*pending[T]
	writing int // writes running; with parallel of them, items queued now go in a next batch
}

type pending[T any] struct {
	item T
	done chan error
}

// NewGroup returns a Group writing batches of at most limit items with write,
// parallel batches at once (at least 1).
func NewGroup[T any](limit, parallel int, write func(batch []T) error) *Group[T] {
	return &Group[T]{write: write, max: limit, parallel: max(parallel, 1)}
}

// Add queues item and waits until it is written or failed.
func (g *Group[T]) Add(item T) error {
	p := &pending[T]{item: item, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, p)
	lead := g.writing < g.parallel
	if lead {
		g.writing++
	}
	g.mu.Unlock()
	if lead {
		g.flush()
	}
	return <-p.done
}

func (g *Group[T]) flush() {
	g.mu.Lock()
	n := min(len(g.queue), g.max)
	batch := make([]*pending[T], n)
	copy(batch, g.queue)
	g.queue = append(g.queue[:0], g.queue[n:]...)
	g.mu.Unlock()

	// With parallel > 1 another writer may have taken every queued item,
	// this caller's too: nothing to write then.
	if n > 0 {
		g.writeBatch(batch)
	}

	g.mu.Lock()
	more := len(g.queue) > 0
	if !more {
		g.writing--
	}
	g.mu.Unlock()
	if more {
		go g.flush()
	}
}

// writeBatch writes batch together, or each item alone if that failed, and
// tells each caller its item's result.
func (g *Group[T]) writeBatch(batch []*pending[T]) {
	items := make([]T, len(batch))
	for i, p := range batch {
		items[i] = p.item
	}
	err := g.safeWrite(items)
	if err != nil && len(batch) > 1 {
		for i, p := range batch {
			p.done <- g.safeWrite(items[i : i+1])
		}
		return
	}
	for _, p := range batch {
		p.done <- err
	}
}

// safeWrite is write with a panic turned into the batch's error: the
// writer may be another caller's goroutine, or one of the group's own.
func (g *Group[T]) safeWrite(items []T) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in a grouped write: %v", r)
		}
	}()
	return g.write(items)
}

// TxFunc is one caller's part of a grouped transaction: statements on tx
// with the caller's own context (its organization). It must not act outside
// the transaction: it may run twice (in a batch that failed, then alone).
type TxFunc func(tx *ent.Client) error

// maxTxGroup bounds the callers sharing one transaction.
const maxTxGroup = 128

// txGroupTimeout bounds one grouped transaction, detached from every
// caller's cancellation (each caller's statements still follow its own
// context).
const txGroupTimeout = 30 * time.Second

// Writes group-commits small transactions of concurrent callers (see
// Group): a finished export run's outcome, a run's start. Each caller's
// function runs in order inside one shared transaction; if the shared
// transaction fails, each runs again in a transaction of its own, so one
// caller's failure is not another's.
type Writes struct {
	client *ent.Client
	group  *Group[TxFunc]
}

// NewWrites returns a Writes committing through client.
// parallel transactions may be in flight at once: 1 on SQLite (one writer),
// a few on PostgreSQL, where a grouped transaction is a round trip per
// statement and concurrent transactions proceed side by side.
func NewWrites(client *ent.Client, parallel int) *Writes {
	w := &Writes{client: client}
	w.group = NewGroup(maxTxGroup, parallel, w.commit)
	return w
}

// Do runs fn in a transaction shared with concurrent callers and returns
// once that transaction committed (nil) or fn's own transaction failed.
func (w *Writes) Do(fn TxFunc) error {
	return w.group.Add(fn)
}

func (w *Writes) commit(fns []TxFunc) error {
	ctx, cancel := context.WithTimeout(tenant.System(context.Background()), txGroupTimeout)
	defer cancel()
	return WithTx(ctx, w.client, func(tx *ent.Client) error {
		for _, fn := range fns {
			if err := fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
}

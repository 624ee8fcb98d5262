package db

import (
	"fmt"
	"sync"
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

package db

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGroupBatchesWhileBusy: items added while a write is in flight are
// written together by the next write, and every caller returns after its
// own item was written.
func TestGroupBatchesWhileBusy(t *testing.T) {
	var (
		mu      sync.Mutex
		batches [][]int
		written = map[int]bool{}
	)
	entered, release := make(chan struct{}), make(chan struct{})
	g := NewGroup(100, 1, func(b []int) error {
		if b[0] == 0 {
			close(entered)
			<-release
		}
		mu.Lock()
		defer mu.Unlock()
		batches = append(batches, slices.Clone(b))
		for _, i := range b {
			written[i] = true
		}
		return nil
	})
	var wg sync.WaitGroup
	add := func(i int) {
		defer wg.Done()
		if err := g.Add(i); err != nil {
			t.Errorf("Add(%d): %v", i, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if !written[i] {
			t.Errorf("Add(%d) returned before its item was written", i)
		}
	}
	wg.Add(1)
	go add(0)
	<-entered
	for i := 1; i <= 10; i++ {
		wg.Add(1)
		go add(i)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		g.mu.Lock()
		n := len(g.queue)
		g.mu.Unlock()
		if n == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d items queued behind the busy write, want 10", n)
		}
	}
	close(release)
	wg.Wait()
	if len(batches) != 2 || len(batches[0]) != 1 || len(batches[1]) != 10 {
		t.Fatalf("batches %v, want [0] then the 10 items queued meanwhile", batches)
	}
}

// TestGroupIsolatesAFailingItem: a batch holding an item the write refuses,
// or one whose write panics, fails that item's caller only; the other items
// of the batch are written again one by one and their callers succeed.
func TestGroupIsolatesAFailingItem(t *testing.T) {
	stored := map[string]int{}
	g := NewGroup(100, 1, func(b []string) error {
		for _, s := range b {
			switch s {
			case "bad":
				return errors.New("refused")
			case "panic":
				panic("boom")
			}
		}
		for _, s := range b {
			stored[s]++
		}
		return nil
	})
	items := []string{"ok1", "bad", "ok2", "panic", "ok3"}
	batch := make([]*pending[string], len(items))
	for i, s := range items {
		batch[i] = &pending[string]{item: s, done: make(chan error, 1)}
	}
	// What Add does with items queued while a write was busy, without the
	// timing of concurrent callers.
	g.mu.Lock()
	g.queue, g.writing = batch, 1
	g.mu.Unlock()
	g.flush()
	for _, p := range batch {
		err := <-p.done
		switch p.item {
		case "bad":
			if err == nil || err.Error() != "refused" {
				t.Errorf("bad: err %v, want refused", err)
			}
		case "panic":
			if err == nil || !strings.Contains(err.Error(), "boom") {
				t.Errorf("panic: err %v, want the panic as an error", err)
			}
		default:
			if err != nil {
				t.Errorf("%s: %v", p.item, err)
			}
		}
	}
	if want := map[string]int{"ok1": 1, "ok2": 1, "ok3": 1}; !maps.Equal(stored, want) {
		t.Fatalf("stored %v, want %v", stored, want)
	}
	if g.writing != 0 {
		t.Fatal("group still busy after the queue drained")
	}
}

// TestGroupParallel: with parallel writes, at most that many are in flight
// at once, two are (the group does not serialise them), no write is empty,
// and every item is written exactly once.
func TestGroupParallel(t *testing.T) {
	const parallel, n = 3, 400
	var (
		mu               sync.Mutex
		inFlight, most   int
		written          = map[int]int{}
		empty            int
		overlapSeen      = make(chan struct{})
		overlapCloseOnce sync.Once
	)
	g := NewGroup(8, parallel, func(b []int) error {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight > 1 {
			overlapCloseOnce.Do(func() { close(overlapSeen) })
		}
		if len(b) == 0 {
			empty++
		}
		for _, i := range b {
			written[i]++
		}
		mu.Unlock()
		select { // hold the write until another one overlaps it (or 200 ms)
		case <-overlapSeen:
		case <-time.After(200 * time.Millisecond):
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
		return nil
	})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Add(i); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if most > parallel || most < 2 {
		t.Errorf("at most %d writes in flight, want 2..%d", most, parallel)
	}
	if empty > 0 {
		t.Errorf("%d empty writes", empty)
	}
	for i := range n {
		if written[i] != 1 {
			t.Errorf("item %d written %d times", i, written[i])
		}
	}
	// The last writer stops right after delivering its batch's results.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		g.mu.Lock()
		w := g.writing
		g.mu.Unlock()
		if w == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writers left running", w)
		}
	}
	// A leader whose item another writer took meanwhile finds the queue
	// empty: it writes nothing and stops.
	g.mu.Lock()
	g.writing = 1
	g.mu.Unlock()
	g.flush()
	mu.Lock()
	defer mu.Unlock()
	if empty > 0 || g.writing != 0 {
		t.Errorf("a flush of an empty queue: %d empty writes, %d writers left", empty, g.writing)
	}
}

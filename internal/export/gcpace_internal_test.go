package export

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestGCPacer: a collection starts once gcEveryRows rows are counted, not
// before; not again within gcMinInterval however many rows follow, nor
// while one is running; and again once both the rows and the interval
// have passed.
func TestGCPacer(t *testing.T) {
	var started atomic.Int32
	release := make(chan struct{})
	p := &gcPacer{collect: func() { started.Add(1); <-release }}
	waitFor := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for started.Load() != want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := started.Load(); got != want {
			t.Fatalf("%d collections started, want %d", got, want)
		}
	}
	p.add(gcEveryRows - 1)
	time.Sleep(20 * time.Millisecond)
	waitFor(0)
	p.add(1)
	waitFor(1)
	// Running, and within the interval: rows keep counting, nothing starts.
	p.add(3 * gcEveryRows)
	time.Sleep(20 * time.Millisecond)
	waitFor(1)
	release <- struct{}{}
	for p.running.Load() {
		time.Sleep(time.Millisecond)
	}
	p.add(gcEveryRows) // done, but within the interval
	time.Sleep(20 * time.Millisecond)
	waitFor(1)
	p.last.Store(time.Now().Add(-gcMinInterval).UnixNano()) // the interval has passed
	p.add(1)
	waitFor(2)
	release <- struct{}{}
}

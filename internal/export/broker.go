package export

import (
	"sync"
	"time"
)

// Phases reported in progress (ExportPhase without its prefix).
const (
	PhaseQueued     = "QUEUED"
	PhaseQuerying   = "QUERYING"
	PhaseUploading  = "UPLOADING"
	PhaseFinalizing = "FINALIZING"
	PhaseSucceeded  = "SUCCEEDED"
	PhaseFailed     = "FAILED"
	PhaseCanceled   = "CANCELED"
	PhaseSkipped    = "SKIPPED"
)

// Terminal reports whether a phase ends a run.
func Terminal(phase string) bool {
	switch phase {
	case PhaseSucceeded, PhaseFailed, PhaseCanceled, PhaseSkipped:
		return true
	}
	return false
}

// Progress is one progress report of a run.
type Progress struct {
	RunID     string
	Phase     string
	Rows      int64
	Bytes     int64
	TotalRows int64
	ObjectURI string
	Note      string // ExportRun.note, on the terminal report
	Error     *RunError
	Time      time.Time
}

// broker fans a local run's progress out to watchers. Each watcher sees the
// latest state (slow watchers skip intermediate reports, never the terminal one).
type broker struct {
	mu   sync.Mutex
	runs map[string]*runFeed
}

type runFeed struct {
	latest Progress
	subs   map[chan Progress]struct{}
}

func newBroker() *broker { return &broker{runs: map[string]*runFeed{}} }

func (b *broker) open(p Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.runs[p.RunID] = &runFeed{latest: p, subs: map[chan Progress]struct{}{}}
}

// publish records p and offers it to every watcher without blocking.
func (b *broker) publish(p Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, ok := b.runs[p.RunID]
	if !ok {
		return
	}
	f.latest = p
	for ch := range f.subs {
		latest(ch, p) // a stale undelivered report is replaced by the newest
	}
	if Terminal(p.Phase) {
		for ch := range f.subs {
			close(ch)
		}
		delete(b.runs, p.RunID)
	}
}

// subscribe returns the latest report and a channel of later ones (closed
// after the terminal report), or ok=false if the run is not running here.
func (b *broker) subscribe(runID string) (Progress, chan Progress, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, ok := b.runs[runID]
	if !ok {
		return Progress{}, nil, false
	}
	ch := make(chan Progress, 1)
	f.subs[ch] = struct{}{}
	return f.latest, ch, true
}

func (b *broker) unsubscribe(runID string, ch chan Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f, ok := b.runs[runID]; ok {
		if _, sub := f.subs[ch]; sub {
			delete(f.subs, ch)
			close(ch)
		}
	}
}

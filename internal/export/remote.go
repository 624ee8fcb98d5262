package export

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/auditexport/auditexport/ent/exportrun"
	"github.com/auditexport/auditexport/internal/tenant"
)

// remoteHub follows runs this process does not execute (another replica's,
// or finished ones) for their watchers. One goroutine reads every watched
// run in one query per ProgressEvery, however many watchers and runs there
// are, and hands each watcher the latest progress of its run: a thousand
// browsers watching a run on another replica cost one query a tick, not a
// thousand.
type remoteHub struct {
	r       *Runner
	mu      sync.Mutex
	subs    map[string]map[chan Progress]struct{} // run id -> watchers
	running bool
	polls   atomic.Int64 // queries made (tests)
}

func newRemoteHub(r *Runner) *remoteHub {
	return &remoteHub{r: r, subs: map[string]map[chan Progress]struct{}{}}
}

// subscribe adds a watcher of runID, first told p (what the caller read).
// The channel holds the latest progress only (a slow watcher skips
// intermediate reports, never the terminal one) and is closed when the
// run has ended (after its terminal report) or disappeared; cancel
// unsubscribes.
func (h *remoteHub) subscribe(runID string, p Progress) (<-chan Progress, func()) {
	ch := make(chan Progress, 1)
	ch <- p
	if Terminal(p.Phase) || h.r.base.Err() != nil {
		close(ch)
		return ch, func() {}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs[runID] == nil {
		h.subs[runID] = map[chan Progress]struct{}{}
	}
	h.subs[runID][ch] = struct{}{}
	if !h.running {
		h.running = true
		h.r.bg.Add(1)
		go h.loop()
	}
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[runID][ch]; ok {
			delete(h.subs[runID], ch)
			if len(h.subs[runID]) == 0 {
				delete(h.subs, runID)
			}
		}
	}
}

// loop polls while anyone watches; it ends with the last watcher (or the
// runner).
func (h *remoteHub) loop() {
	defer h.r.bg.Done()
	t := time.NewTicker(h.r.cfg.ProgressEvery)
	defer t.Stop()
	for {
		select {
		case <-h.r.base.Done():
			h.closeAll()
			return
		case <-t.C:
		}
		h.mu.Lock()
		ids := make([]string, 0, len(h.subs))
		for id := range h.subs {
			ids = append(ids, id)
		}
		if len(ids) == 0 {
			h.running = false
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		h.polls.Add(1)
		ctx, cancel := context.WithTimeout(tenant.System(h.r.base), 10*time.Second)
		runs, err := h.r.d.Client.ExportRun.Query().Where(exportrun.IDIn(ids...)).All(ctx)
		cancel()
		if err != nil {
			h.r.log.Warn("reading watched runs failed; retrying", "runs", len(ids), "err", err.Error())
			continue
		}
		found := map[string]Progress{}
		for _, run := range runs {
			found[run.ID] = ProgressOf(run)
		}
		h.mu.Lock()
		for _, id := range ids {
			p, ok := found[id]
			for ch := range h.subs[id] {
				if ok {
					latest(ch, p)
				}
				if !ok || Terminal(p.Phase) {
					close(ch)
				}
			}
			if !ok || Terminal(p.Phase) {
				delete(h.subs, id)
			}
		}
		h.mu.Unlock()
	}
}

func (h *remoteHub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, chans := range h.subs {
		for ch := range chans {
			close(ch)
		}
		delete(h.subs, id)
	}
	h.running = false
}

// latest puts p in ch, replacing an unread older report.
func latest(ch chan Progress, p Progress) {
	select {
	case ch <- p:
		return
	default:
	}
	select {
	case <-ch:
	default:
	}
	select {
	case ch <- p:
	default:
	}
}

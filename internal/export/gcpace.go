package export

import (
	"runtime"
	"sync/atomic"
	"time"
)

// An export allocates little once it runs (its batches, buffers and
// compressors are reused: ~3 MiB per million rows), so Go's collector,
// which waits until the heap has grown by as much as was live at its last
// cycle (GOGC=100), runs once or twice in a 10M-row export. Meanwhile the
// garbage piles up towards twice the live heap of the first cycle — taken
// while a Parquet row group or the upload's first parts were buffered —
// and the process's peak memory grows with the export's length instead of
// staying flat (docs/BENCHMARKS.md, "Export path").
//
// exportGC starts a collection after every gcEveryRows rows encoded by the
// process's exports together, at most one at a time and one per
// gcMinInterval, on a goroutine of its own (nobody waits for it).
//
// Measured (docs/BENCHMARKS.md): every 2^20 rows and 1 s, a 10M-row
// export's heap peaked at 45–46 MiB instead of 59–67 (Parquet, CSV+gzip;
// export.Write in one process, alternated) at the same speed, but with 4
// exports running at once a collection of all their heaps ran every second
// and Send now's first message came later (PostgreSQL p50 38–46 ms
// against 31–37, p99 188–269 against 139–212, 4 runs each). Every 2^22
// rows and 5 s keeps that cost out of the way (p50 35–38 ms) and still
// bounds a long export's garbage to what 4M rows make (~13 MiB).
var exportGC = gcPacer{collect: runtime.GC}

const (
	gcEveryRows   = 1 << 22
	gcMinInterval = 5 * time.Second
)

type gcPacer struct {
	collect func()
	rows    atomic.Int64 // rows since the last collection it started
	last    atomic.Int64 // when it started it (UnixNano)
	running atomic.Bool
}

// add counts n rows encoded and starts a collection when they are due.
func (p *gcPacer) add(n int) {
	if p.rows.Add(int64(n)) < gcEveryRows {
		return
	}
	now := time.Now().UnixNano()
	if now-p.last.Load() < int64(gcMinInterval) || !p.running.CompareAndSwap(false, true) {
		return
	}
	p.rows.Store(0)
	p.last.Store(now)
	go func() {
		defer p.running.Store(false)
		p.collect()
	}()
}

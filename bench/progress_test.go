package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/testenv"
)

const (
	envProgressSamples = "AUDITEXPORT_BENCH_PROGRESS_SAMPLES" // Send nows measured per backend (default 8: smoke)
	envProgressRows    = "AUDITEXPORT_BENCH_PROGRESS_ROWS"    // rows each Send now exports (default 2000: smoke)
	envProgressTrace   = "AUDITEXPORT_BENCH_PROGRESS_TRACE"   // directory: a server execution trace per backend (seconds 2-12 of the load)
	progressWorkers    = 4                                    // concurrent Send nows: the load
)

// progressResult is the first-message latency and the cadence of Send nows
// made while others run.
type progressResult struct {
	Backend                string
	Rows, Samples, Workers int
	First                  []time.Duration // sorted
	MaxGap                 time.Duration   // longest silence between two messages of one run
	RunSeconds             float64         // median run duration
	Load                   string
}

// TestSendNowProgress measures how soon a Send now's first progress message
// arrives and how regularly the next ones follow while the server is busy:
// progressWorkers clients each Send now their own schedule (CSV + gzip to
// LOCAL) back to back, so every measured call competes with three running
// exports on the 2 cores. The smoke (default) asserts only that every run
// streamed a first message and succeeded; `make bench` writes p50/p99/max
// of the first message and the longest gap to docs/BENCHMARKS.md.
func TestSendNowProgress(t *testing.T) {
	samples, err := strconv.Atoi(envOr(envProgressSamples, "8"))
	if err != nil || samples < progressWorkers {
		t.Fatalf("%s: want a count >= %d", envProgressSamples, progressWorkers)
	}
	rows, err := strconv.Atoi(envOr(envProgressRows, "2000"))
	if err != nil || rows <= 0 {
		t.Fatalf("%s: want a positive row count", envProgressRows)
	}
	s3env := testenv.StartMinIO(t)
	s3env.CreateBucket(t, bucket)
	var results []progressResult
	for _, backend := range backendsFor(t) {
		t.Run(backend, func(t *testing.T) {
			r := measureProgress(t, s3env, backend, rows, samples)
			t.Logf("%s: %d Send nows of %d rows, %d at a time: first message p50 %v p99 %v max %v; longest gap %v; median run %.2fs",
				backend, r.Samples, r.Rows, r.Workers, r.First[len(r.First)/2], pct(r.First, 99), r.First[len(r.First)-1], r.MaxGap, r.RunSeconds)
			results = append(results, r)
		})
	}
	if path := os.Getenv(envReport); path != "" && os.Getenv(envProgressSamples) != "" && !t.Failed() {
		writeSection(t, path, "progress", progressReport(results))
	}
}

func measureProgress(t *testing.T, s3env *testenv.S3, backend string, rows, samples int) progressResult {
	dataDir := t.TempDir()
	dsn := newDatabase(t, backend, dataDir)
	key, _, _ := auth.NewAPIKey()
	cases := make([]exportCase, progressWorkers)
	for i := range cases {
		cases[i] = exportCase{ID: fmt.Sprintf("w%d", i), Format: pb.Format_FORMAT_CSV, Compression: pb.Compression_COMPRESSION_GZIP, Ext: "csv.gz"}
	}
	srv := startServer(t, dsn, key, dataDir)
	ids := setup(t, srv, key, s3env, dataDir, cases)
	srv.stop(t)
	if out, err := exec.Command(aeBin, "seed", "--events", strconv.Itoa(rows), "--db", dsn).CombinedOutput(); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	traceDir := os.Getenv(envProgressTrace)
	if traceDir != "" {
		extraServerArgs = []string{"--pprof-addr", pprofAddr}
		defer func() { extraServerArgs = nil }()
	}
	srv = startServer(t, dsn, key, dataDir)
	if traceDir != "" {
		wait := traceServer(t, filepath.Join(traceDir, backend+"-progress.trace"), 2*time.Second, 10*time.Second)
		defer wait()
	}

	var (
		mu     sync.Mutex
		first  []time.Duration
		runs   []float64
		maxGap time.Duration
		wg     sync.WaitGroup
	)
	next := make(chan struct{}, samples)
	for range samples {
		next <- struct{}{}
	}
	close(next)
	for _, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				msgs := sendNow(t, srv, key, ids[c.ID])
				gap := time.Duration(0)
				for i := 1; i < len(msgs); i++ {
					gap = max(gap, msgs[i].At-msgs[i-1].At)
				}
				deleteObject(t, s3env, msgs[len(msgs)-1].P.GetObjectUri())
				mu.Lock()
				first = append(first, msgs[0].At)
				runs = append(runs, msgs[len(msgs)-1].At.Seconds())
				maxGap = max(maxGap, gap)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	load := loadAvg()
	srv.stop(t)
	if len(first) != samples {
		t.Fatalf("%d of %d Send nows measured", len(first), samples)
	}
	slices.Sort(first)
	slices.Sort(runs)
	return progressResult{Backend: backend, Rows: rows, Samples: samples, Workers: progressWorkers, First: first,
		MaxGap: maxGap, RunSeconds: runs[len(runs)/2], Load: load}
}

// traceServer takes an execution trace of the server (runtime/trace) of
// dur, starting after delay; the returned func waits for it and writes it
// to path (read it with `go tool trace`, e.g. -pprof=sched).
func traceServer(t *testing.T, path string, delay, dur time.Duration) func() {
	return fetchPprof(t, path, fmt.Sprintf("trace?seconds=%d", max(1, int(dur.Seconds()))), delay)
}

// pct is the p-th percentile of sorted durations (nearest rank).
func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}

func progressReport(rs []progressResult) string {
	var b strings.Builder
	b.WriteString("## Send now progress under load\n\n")
	fmt.Fprintf(&b, "Measured %s by `make bench` (bench/progress_test.go). %d clients each Send now their own schedule\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), progressWorkers)
	b.WriteString("(whole AUDIT_LOGS, CSV + gzip to LOCAL) back to back, so every measured call competes with the other running\n" +
		"exports for the 2 CPUs. *first message* is the SendNow call to its first streamed ExportProgress (target: p99 < 200 ms);\n" +
		"*longest gap* is the longest silence between two messages of one run; the runner publishes every 250 ms, and a gap\n" +
		"close to that means the cadence held under load. Server, database and clients share the machine.\n\n")
	b.WriteString("| backend | rows per run | Send nows | concurrent | first message p50 | p99 | max | longest gap | median run | load avg after |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %v | %v | %v | %v | %.2f s | %s |\n", r.Backend, r.Rows, r.Samples, r.Workers,
			r.First[len(r.First)/2].Round(time.Millisecond), pct(r.First, 99).Round(time.Millisecond),
			r.First[len(r.First)-1].Round(time.Millisecond), r.MaxGap.Round(time.Millisecond), r.RunSeconds, r.Load)
	}
	b.WriteString("\n")
	return b.String()
}

package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/testenv"
)

const (
	envAPIDuration = "AUDITEXPORT_BENCH_API_DURATION" // per measurement (default 300ms: smoke)
	envAPIProfile  = "AUDITEXPORT_BENCH_API_PROFILE"  // directory: a server CPU profile per backend of GetSchedule over gRPC at c=16
	apiSchedules   = 60                               // so that ListSchedules fills a page of 50
)

// apiResult is one (call, transport, concurrency) measurement.
type apiResult struct {
	Backend, Call, Transport string
	Conc, Ops                int
	Seconds                  float64
	P50, P99                 time.Duration
	Errors                   int
}

func (r apiResult) perSec() float64 { return float64(r.Ops) / r.Seconds }

// TestAPIReads measures read calls against the same process's gRPC health
// check (no database, no authentication, no audit row: the transport's
// limit) at concurrency 16 and 64: GetSchedule and ListSchedules (page 50)
// over gRPC and the same calls over the REST gateway. Every call writes its
// audit row, so this also measures how audit writes hold reads back. The
// smoke (default run) checks that every call succeeded; `make bench-api`
// writes the table to docs/BENCHMARKS.md.
func TestAPIReads(t *testing.T) {
	dur, err := time.ParseDuration(envOr(envAPIDuration, "300ms"))
	if err != nil || dur <= 0 {
		t.Fatalf("%s: want a duration", envAPIDuration)
	}
	var results []apiResult
	for _, backend := range backendsFor(t) {
		t.Run(backend, func(t *testing.T) {
			rs := measureAPI(t, backend, dur)
			for _, r := range rs {
				t.Logf("%s %-13s %-4s c=%-2d %8.0f/s p50 %v p99 %v", r.Backend, r.Call, r.Transport, r.Conc, r.perSec(), r.P50, r.P99)
			}
			results = append(results, rs...)
		})
	}
	if path := os.Getenv(envReport); path != "" && os.Getenv(envAPIDuration) != "" && !t.Failed() {
		writeSection(t, path, "api", apiReport(results))
	}
}

func measureAPI(t *testing.T, backend string, dur time.Duration) []apiResult {
	dataDir := t.TempDir()
	dsn := newDatabase(t, backend, dataDir)
	key, _, _ := auth.NewAPIKey()
	profDir := os.Getenv(envAPIProfile)
	if profDir != "" {
		extraServerArgs = []string{"--pprof-addr", pprofAddr}
		defer func() { extraServerArgs = nil }()
	}
	srv := startServer(t, dsn, key, dataDir)
	scheduleID := apiSetup(t, srv, key, dataDir)
	ctx := withKey(key)
	health := healthpb.NewHealthClient(srv.conn)
	scheds := pb.NewScheduleServiceClient(srv.conn)
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}}
	base := "http://" + srv.HTTPAddr
	rest := func(path string) func() error {
		return func() error {
			req, _ := http.NewRequest(http.MethodGet, base+path, nil)
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := httpc.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %s %s", path, resp.Status, body)
			}
			return nil
		}
	}
	calls := []struct {
		name, transport string
		fn              func() error
	}{
		{"Health/Check", "gRPC", func() error {
			_, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
			return err
		}},
		{"GetSchedule", "gRPC", func() error {
			_, err := scheds.GetSchedule(ctx, &pb.GetScheduleRequest{Id: scheduleID})
			return err
		}},
		{"ListSchedules", "gRPC", func() error {
			r, err := scheds.ListSchedules(ctx, &pb.ListSchedulesRequest{PageSize: 50})
			if err == nil && len(r.GetSchedules()) != 50 {
				err = fmt.Errorf("ListSchedules returned %d schedules, want 50", len(r.GetSchedules()))
			}
			return err
		}},
		{"GetSchedule", "REST", rest("/v1/schedules/" + scheduleID)},
		{"ListSchedules", "REST", rest("/v1/schedules?page_size=50")},
	}
	var out []apiResult
	for _, conc := range []int{16, 64} {
		for _, c := range calls {
			var prof func()
			if profDir != "" && conc == 16 && c.name == "GetSchedule" && c.transport == "gRPC" {
				prof = profile(t, filepath.Join(profDir, backend+"-getschedule-grpc-c16.pprof"), dur)
			}
			r := load(conc, dur, c.fn)
			if prof != nil {
				prof()
			}
			r.Backend, r.Call, r.Transport = backend, c.name, c.transport
			if r.Errors > 0 {
				t.Errorf("%s %s %s c=%d: %d calls failed, first: %v", backend, c.name, c.transport, conc, r.Errors, r.firstErr)
			}
			if r.Ops == 0 {
				t.Fatalf("%s %s %s c=%d: no call completed", backend, c.name, c.transport, conc)
			}
			out = append(out, r.apiResult)
		}
	}
	return out
}

const pprofAddr = "127.0.0.1:16060"

// profile starts a CPU profile of the server covering a measurement of
// dur; the returned func waits for it and writes it to path.
func profile(t *testing.T, path string, dur time.Duration) func() {
	return fetchPprof(t, path, fmt.Sprintf("profile?seconds=%d", max(1, int(dur.Seconds()))), 0)
}

// fetchPprof fetches the server's /debug/pprof/<endpoint> after delay, in
// the background; the returned func waits for it and writes it to path.
func fetchPprof(t *testing.T, path, endpoint string, delay time.Duration) func() {
	done := make(chan error, 1)
	go func() {
		time.Sleep(delay)
		resp, err := testenv.HTTP.Get(fmt.Sprintf("http://%s/debug/pprof/%s", pprofAddr, endpoint))
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil {
			err = os.WriteFile(path, b, 0o644)
		}
		done <- err
	}()
	return func() {
		if err := <-done; err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}

type loadResult struct {
	apiResult
	firstErr error
}

// load runs fn from conc goroutines for dur (after a short warm-up) and
// returns the throughput and latency percentiles of the calls that
// completed inside the window.
func load(conc int, dur time.Duration, fn func() error) loadResult {
	warm := time.Now().Add(dur / 5)
	end := warm.Add(dur)
	var (
		mu   sync.Mutex
		lats []time.Duration
		res  loadResult
		wg   sync.WaitGroup
	)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			var errs int
			var first error
			for {
				s := time.Now()
				// Each worker measures at least one call: on a loaded
				// machine (the CI smoke, short windows) a slow call could
				// straddle the whole window and leave nothing measured.
				if !s.Before(end) && (len(mine) > 0 || errs > 0) {
					break
				}
				err := fn()
				if s.Before(warm) {
					continue
				}
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				mine = append(mine, time.Since(s))
			}
			mu.Lock()
			lats = append(lats, mine...)
			res.Errors += errs
			if res.firstErr == nil {
				res.firstErr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lats)
	res.Conc, res.Ops, res.Seconds = conc, len(lats), time.Since(warm).Seconds()
	if len(lats) > 0 {
		res.P50, res.P99 = lats[len(lats)/2], pct(lats, 99)
	}
	return res
}

// apiSetup makes a LOCAL integration, a saved workbook and apiSchedules
// schedules on it; it returns one schedule's id.
func apiSetup(t *testing.T, srv *server, key, dataDir string) string {
	ctx := withKey(key)
	me, err := pb.NewAccountServiceClient(srv.conn).GetCurrentUser(ctx, &pb.GetCurrentUserRequest{})
	if err != nil {
		t.Fatalf("GetCurrentUser: %v", err)
	}
	localDir := filepath.Join(dataDir, "exports", me.GetUser().GetOrganizationId(), "api")
	if _, err := pb.NewIntegrationServiceClient(srv.conn).CreateStorageIntegration(ctx, &pb.CreateStorageIntegrationRequest{
		StorageIntegration: &pb.StorageIntegration{Name: "api_local", Provider: pb.Provider_PROVIDER_LOCAL,
			Destination: "file://" + localDir + "/"}}); err != nil {
		t.Fatalf("create LOCAL integration: %v", err)
	}
	wb := saveWorkbook(t, srv, ctx, "api")
	var id string
	for i := range apiSchedules {
		sc, err := pb.NewScheduleServiceClient(srv.conn).CreateSchedule(ctx, &pb.CreateScheduleRequest{WorkbookId: wb.GetWorkbook().GetId(),
			Schedule: &pb.Schedule{Name: "api" + strconv.Itoa(i), ElementId: wb.GetWorkbook().GetElements()[0].GetId(),
				Destination: &pb.ScheduleDestination{CloudStorage: &pb.CloudStorageDestination{
					StorageIntegrationName: "api_local", Uri: fmt.Sprintf("file://%s/s%d-{run_id}.csv", localDir, i)}},
				Format: pb.Format_FORMAT_CSV, Mode: pb.ExportMode_EXPORT_MODE_SNAPSHOT, Cron: "0 0 1 1 *", TimeZone: "UTC"}})
		if err != nil {
			t.Fatalf("create schedule %d: %v", i, err)
		}
		id = sc.GetSchedule().GetId()
	}
	return id
}

func apiReport(rs []apiResult) string {
	var b strings.Builder
	b.WriteString("## API reads\n\n")
	fmt.Fprintf(&b, "Measured %s by `make bench-api` (bench/api_test.go), load average %s at the end. The server binary runs\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), loadAvg())
	b.WriteString("alone; the client (same machine, same 2 cores) keeps *c* calls in flight. *anchor*: the same process's\n")
	b.WriteString("`grpc.health.v1.Health/Check` at the same concurrency (no authentication, no database, no audit row). Every\n")
	b.WriteString("other call authenticates its API key, reads, and writes its audit row before it answers. Targets (issue 11):\n")
	b.WriteString("gRPC ≥ 50% of the anchor with p99 < 10 ms at c=16; REST ≥ 50% of gRPC for the same call.\n\n")
	b.WriteString("| backend | call | transport | c | calls/s | p50 | p99 | ratio | target | met |\n|---|---|---|---:|---:|---:|---:|---:|---|---|\n")
	find := func(backend, call, transport string, conc int) *apiResult {
		for i := range rs {
			if r := &rs[i]; r.Backend == backend && r.Call == call && r.Transport == transport && r.Conc == conc {
				return r
			}
		}
		return nil
	}
	for _, r := range rs {
		ratio, target, met := "", "anchor", ""
		switch {
		case r.Call == "Health/Check":
		case r.Transport == "gRPC":
			if a := find(r.Backend, "Health/Check", "gRPC", r.Conc); a != nil {
				q := r.perSec() / a.perSec()
				ratio, target = fmt.Sprintf("%.2f of anchor", q), "≥ 0.50"
				ok := q >= 0.5
				if r.Conc == 16 {
					target += ", p99 < 10 ms"
					ok = ok && r.P99 < 10*time.Millisecond
				}
				met = map[bool]string{true: "yes", false: "**no**"}[ok]
			}
		default:
			if g := find(r.Backend, r.Call, "gRPC", r.Conc); g != nil {
				q := r.perSec() / g.perSec()
				ratio, target = fmt.Sprintf("%.2f of gRPC", q), "≥ 0.50"
				met = map[bool]string{true: "yes", false: "**no**"}[q >= 0.5]
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %.0f | %s | %s | %s | %s | %s |\n", r.Backend, r.Call, r.Transport, r.Conc, r.perSec(),
			r.P50.Round(10*time.Microsecond), r.P99.Round(10*time.Microsecond), ratio, target, met)
	}
	b.WriteString("\nAudit rows are group-committed (internal/auditlog/recorder.go): calls whose rows arrive while a commit is in\n")
	b.WriteString("flight share the next one, and every call still answers only after its own row is committed.\n")
	return b.String()
}

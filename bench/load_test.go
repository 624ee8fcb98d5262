package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/testenv"
)

const (
	envLoadClients  = "AUDITEXPORT_BENCH_LOAD_CLIENTS"  // concurrent clients per backend (default 40: smoke)
	envLoadDuration = "AUDITEXPORT_BENCH_LOAD_DURATION" // how long they call (default 8s: smoke)
	envLoadSection  = "AUDITEXPORT_BENCH_LOAD_SECTION"  // section of docs/BENCHMARKS.md to write (default load; soak: soak)
	loadMaxTemp     = 6                                 // schedules a client keeps besides its Send now schedule
)

// loadOps are the calls a load client makes and their weights.
var loadOps = []struct {
	name   string
	weight int
}{
	{"GetSchedule", 20},
	{"GetSchedule REST", 6},
	{"ListSchedules", 10},
	{"GetWorkbook", 8},
	{"QueryElement", 6},
	{"CreateSchedule", 8},
	{"UpdateSchedule", 8},
	{"DeleteSchedule", 6},
	{"UpdateWorkbook", 6},
	{"SendNow", 4},
}

// TestLoad runs many clients at once against one server on SQLite and two
// replicas on PostgreSQL (clients spread over both; each Send now is
// watched from the other one), each client owning its workbook and
// schedules and mixing reads, writes, Send nows (a LOCAL integration, a
// small element) and WatchExportRun watchers. It asserts, on every run:
//
//   - no call fails with anything but RESOURCE_EXHAUSTED from the Send now
//     limits (counted; the limits are raised so they stay rare): no
//     INTERNAL, UNAVAILABLE, ABORTED, DEADLINE_EXCEEDED, no REST 5xx, and
//     no "database is locked"/SQLITE_BUSY in the server logs (SQLite's
//     write contention is absorbed by the server);
//   - no acknowledged write is lost: every read of a client's own
//     resources during the load and a full check afterwards (through the
//     other replica on PostgreSQL) sees every acknowledged create, update
//     and delete;
//   - every Send now and every watcher ends with exactly one terminal
//     message, its last, the same phase for both, SUCCEEDED, with the
//     object written and the run recorded in that state.
//
// The default run is the smoke of `make test` (40 clients for 8 s, all the
// assertions, nothing about speed); `make bench-load` (200 clients, 60 s)
// writes throughput and p50/p99 per call to docs/BENCHMARKS.md and `make
// soak` runs it longer.
func TestLoad(t *testing.T) {
	clients, err := strconv.Atoi(envOr(envLoadClients, "40"))
	if err != nil || clients <= 0 {
		t.Fatalf("%s: want a positive count", envLoadClients)
	}
	dur, err := time.ParseDuration(envOr(envLoadDuration, "8s"))
	if err != nil || dur <= 0 {
		t.Fatalf("%s: want a duration", envLoadDuration)
	}
	var results []loadRun
	for _, backend := range backendsFor(t) {
		t.Run(backend, func(t *testing.T) {
			r := runLoad(t, backend, clients, dur)
			t.Logf("%s: %d clients, %d replica(s), %.1f s: %d calls (%.0f/s), %d Send nows, %d watchers, %d RESOURCE_EXHAUSTED",
				backend, r.Clients, r.Replicas, r.Seconds, r.total(), float64(r.total())/r.Seconds, r.SendNows, r.Watchers, r.Exhausted)
			for _, s := range r.Stats {
				t.Logf("  %-18s %7d %8.1f/s p50 %-9v p99 %v", s.Name, s.N, float64(s.N)/r.Seconds, s.P50, s.P99)
			}
			results = append(results, r)
		})
	}
	if path := os.Getenv(envReport); path != "" && os.Getenv(envLoadDuration) != "" && !t.Failed() {
		section := envOr(envLoadSection, "load")
		writeSection(t, path, section, loadReport(section, results))
	}
}

// loadRun is one backend's measurement.
type loadRun struct {
	Backend                       string
	Clients, Replicas             int
	Seconds                       float64
	Stats                         []opStat
	SendNows, Watchers, Exhausted int
	Schedules, Updates, Deletes   int // acknowledged writes checked afterwards
	Load                          string
}

func (r loadRun) total() int {
	n := 0
	for _, s := range r.Stats {
		n += s.N
	}
	return n
}

type opStat struct {
	Name          string
	N             int
	P50, P99, Max time.Duration
}

// loadClient is one client's state: what it was told it wrote.
type loadClient struct {
	i          int
	conn       *grpc.ClientConn // to its replica
	other      *grpc.ClientConn // the other replica (the same one on SQLite): watchers and the final check
	httpBase   string
	rng        *rand.Rand
	wbID, elID string
	wbName     string
	sendID     string            // its Send now schedule
	live       map[string]string // schedule id -> acknowledged name
	deleted    []string
	unsure     map[string]bool // names of creates whose outcome is unknown (the call failed)
	seq        int
	runs       []finishedRun
	lats       map[string][]time.Duration
	updates    int
}

type finishedRun struct {
	id, uri string
	phase   pb.ExportPhase
}

// loadState collects failures from every client.
type loadState struct {
	t         *testing.T
	mu        sync.Mutex
	failures  map[string]int // "op code" -> count
	examples  []string
	exhausted atomic.Int64
	watchers  atomic.Int64
	wg        sync.WaitGroup  // watchers
	watchLats []time.Duration // WatchExportRun call to its end
}

func (s *loadState) fail(op string, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	defer s.mu.Unlock()
	key := op
	if s.failures == nil {
		s.failures = map[string]int{}
	}
	s.failures[key]++
	if len(s.examples) < 20 {
		s.examples = append(s.examples, op+": "+msg)
	}
}

// callErr classifies a failed call: RESOURCE_EXHAUSTED (a Send now limit)
// is counted, anything else is a failure.
func (s *loadState) callErr(op string, err error) {
	if st, ok := status.FromError(err); ok && st.Code() == codes.ResourceExhausted && op == "SendNow" {
		s.exhausted.Add(1)
		return
	}
	s.fail(op+" "+status.Code(err).String(), "%v", err)
}

func runLoad(t *testing.T, backend string, nClients int, dur time.Duration) loadRun {
	dataDir := t.TempDir()
	dsn := newDatabase(t, backend, dataDir)
	key, _, _ := auth.NewAPIKey()
	localRoot := filepath.Join(dataDir, "exports")
	// Each client has at most one Send now in flight: limits above the
	// client count are never reached, so RESOURCE_EXHAUSTED would be a bug
	// in the counting (it is still only counted).
	limit := strconv.Itoa(2 * nClients)
	extraServerArgs = []string{"--local-root", localRoot, "--max-manual-runs-per-org", limit, "--max-manual-runs", limit}
	defer func() { extraServerArgs = nil }()
	servers := []*server{startServer(t, dsn, key, dataDir)}
	if backend == "postgres" {
		dir2 := t.TempDir()
		mk, err := os.ReadFile(filepath.Join(dataDir, "master.key"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir2, "master.key"), mk, 0o600); err != nil {
			t.Fatal(err)
		}
		servers = append(servers, startServer(t, dsn, key, dir2))
	}
	ctx := withKey(key)
	me, err := pb.NewAccountServiceClient(servers[0].conn).GetCurrentUser(ctx, &pb.GetCurrentUserRequest{})
	if err != nil {
		t.Fatalf("GetCurrentUser: %v", err)
	}
	localDir := filepath.Join(localRoot, me.GetUser().GetOrganizationId(), "load")
	if _, err := pb.NewIntegrationServiceClient(servers[0].conn).CreateStorageIntegration(ctx, &pb.CreateStorageIntegrationRequest{
		StorageIntegration: &pb.StorageIntegration{Name: "load_local", Provider: pb.Provider_PROVIDER_LOCAL,
			Destination: "file://" + localDir + "/"}}); err != nil {
		t.Fatalf("create LOCAL integration: %v", err)
	}
	// The element: the few audit rows written so far, a static result.
	cutoff := time.Now().UTC().Format(time.RFC3339Nano)

	st := &loadState{t: t}
	clients := make([]*loadClient, nClients)
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: nClients + 8}, Timeout: 2 * time.Minute}
	for i := range clients {
		conn := dial(t, servers[i%len(servers)].GRPCAddr)
		other := dial(t, servers[(i+1)%len(servers)].GRPCAddr)
		clients[i] = &loadClient{i: i, conn: conn, other: other, httpBase: "http://" + servers[i%len(servers)].HTTPAddr,
			rng: rand.New(rand.NewPCG(uint64(i), 42)), live: map[string]string{}, unsure: map[string]bool{},
			lats: map[string][]time.Duration{}}
	}
	fatal := func(err error) {
		for _, s := range servers {
			if uerr := s.Unexpected(); uerr != nil {
				t.Log(uerr)
			}
		}
		t.Fatal(err)
	}
	// Warm-up, one client per server, one call of each kind at a time (not
	// counted): 16 first CreateSchedule calls at once on a fresh -race
	// server made the race detector report a race inside reflect's
	// PointerTo cache (reflect.ptrTo writing a new pointer type while
	// reflect.Value.Elem reads it, both under protobuf's Message.Range in
	// server/validate.go undeclaredEnums; go1.26.8), 2 runs in 3. Not
	// reproduced in a standalone program; left to be looked into.
	warm := clients[:min(len(servers), len(clients))]
	for _, c := range warm {
		if err := c.setup(ctx, localDir, cutoff); err != nil {
			fatal(fmt.Errorf("client %d setup: %w", c.i, err))
		}
		for _, o := range loadOps {
			c.step(ctx, st, localDir, httpc, key, o.name)
		}
	}
	st.wg.Wait()
	for _, c := range warm {
		clear(c.lats)
	}
	st.watchLats = nil
	st.watchers.Store(0)
	var setupWG sync.WaitGroup
	var setupErr atomic.Value
	sem := make(chan struct{}, 16)
	for _, c := range clients[len(warm):] {
		setupWG.Add(1)
		go func() {
			defer setupWG.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := c.setup(ctx, localDir, cutoff); err != nil {
				setupErr.CompareAndSwap(nil, fmt.Errorf("client %d setup: %w", c.i, err))
			}
		}()
	}
	setupWG.Wait()
	if err, _ := setupErr.Load().(error); err != nil {
		fatal(err)
	}

	start := time.Now()
	end := start.Add(dur)
	// Bounded: a call that hangs past this fails the test instead of
	// holding it.
	bound, cancel := context.WithTimeout(ctx, dur+3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && bound.Err() == nil {
				c.step(bound, st, localDir, httpc, key, c.chooseOp())
			}
		}()
	}
	wg.Wait()
	seconds := time.Since(start).Seconds()
	st.wg.Wait()
	load := loadAvg()

	// Every acknowledged write is there, read through the other replica.
	var sendNows, schedules, deletes, updates int
	for _, c := range clients {
		c.verify(ctx, st)
		sendNows += len(c.runs)
		schedules += len(c.live)
		deletes += len(c.deleted)
		updates += c.updates
	}
	for _, s := range servers {
		if err := s.Unexpected(); err != nil {
			logs := err.Error()
			t.Errorf("%s: %s", backend, logs[max(0, len(logs)-20000):])
		}
		logs := s.Logs()
		for _, bad := range []string{"database is locked", "SQLITE_BUSY", "panic:", "DATA RACE"} {
			if n := strings.Count(logs, bad); n > 0 {
				st.fail("server log", "%q appears %d times", bad, n)
			}
		}
	}
	if len(st.failures) > 0 {
		keys := make([]string, 0, len(st.failures))
		for k, n := range st.failures {
			keys = append(keys, fmt.Sprintf("%s ×%d", k, n))
		}
		slices.Sort(keys)
		t.Errorf("%s: failures: %s\nfirst ones:\n  %s", backend, strings.Join(keys, ", "), strings.Join(st.examples, "\n  "))
		for i, s := range servers {
			if logs := s.Logs(); strings.Contains(logs, `"level":"ERROR"`) {
				var errLines []string
				for _, l := range strings.Split(logs, "\n") {
					if strings.Contains(l, `"level":"ERROR"`) && len(errLines) < 10 {
						errLines = append(errLines, l)
					}
				}
				t.Logf("server %d error log lines:\n%s", i, strings.Join(errLines, "\n"))
			}
		}
	}
	if sendNows == 0 {
		t.Errorf("%s: no Send now completed", backend)
	}

	merged := map[string][]time.Duration{"WatchExportRun": st.watchLats}
	for _, c := range clients {
		for op, l := range c.lats {
			merged[op] = append(merged[op], l...)
		}
	}
	var stats []opStat
	for _, op := range append(loadOpNames(), "SendNow first message", "WatchExportRun") {
		l := merged[op]
		if len(l) == 0 {
			continue
		}
		slices.Sort(l)
		stats = append(stats, opStat{Name: op, N: len(l), P50: l[len(l)/2], P99: pct(l, 99), Max: l[len(l)-1]})
	}
	return loadRun{Backend: backend, Clients: nClients, Replicas: len(servers), Seconds: seconds, Stats: stats,
		SendNows: sendNows, Watchers: int(st.watchers.Load()), Exhausted: int(st.exhausted.Load()),
		Schedules: schedules, Updates: updates, Deletes: deletes, Load: load}
}

func loadOpNames() []string {
	var out []string
	for _, o := range loadOps {
		out = append(out, o.name)
	}
	return out
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// setup saves the client's workbook (its element restricted to the rows
// before cutoff) and its Send now schedule.
func (c *loadClient) setup(ctx context.Context, localDir, cutoff string) error {
	wbs := pb.NewWorkbookServiceClient(c.conn)
	ex, err := wbs.ExploreTable(ctx, &pb.ExploreTableRequest{ConnectionId: "con_audit_logs", Table: "AUDIT_LOGS"})
	if err != nil {
		return err
	}
	c.wbID, c.elID = ex.GetWorkbook().GetId(), ex.GetWorkbook().GetElements()[0].GetId()
	c.wbName = fmt.Sprintf("load-%d", c.i)
	if _, err := wbs.SaveWorkbookAs(ctx, &pb.SaveWorkbookAsRequest{Id: c.wbID, Name: c.wbName, Folder: "load"}); err != nil {
		return err
	}
	if _, err := wbs.UpdateWorkbook(ctx, &pb.UpdateWorkbookRequest{
		Workbook: &pb.Workbook{Id: c.wbID, Elements: []*pb.Element{{Id: c.elID,
			Source: &pb.TableSource{ConnectionId: "con_audit_logs", Table: "AUDIT_LOGS"},
			Filters: []*pb.Filter{{Column: "REQUEST_TIME", Operator: pb.FilterOperator_FILTER_OPERATOR_LESS_THAN,
				Values: []string{cutoff}}}}}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"elements"}}}); err != nil {
		return err
	}
	sc, err := pb.NewScheduleServiceClient(c.conn).CreateSchedule(ctx, c.newSchedule(localDir, "send"))
	if err != nil {
		return err
	}
	c.sendID = sc.GetSchedule().GetId()
	c.live[c.sendID] = sc.GetSchedule().GetName()
	return nil
}

func (c *loadClient) newSchedule(localDir, name string) *pb.CreateScheduleRequest {
	return &pb.CreateScheduleRequest{WorkbookId: c.wbID, Schedule: &pb.Schedule{Name: name, ElementId: c.elID,
		Destination: &pb.ScheduleDestination{CloudStorage: &pb.CloudStorageDestination{
			StorageIntegrationName: "load_local", Uri: fmt.Sprintf("file://%s/c%d-{run_id}.csv", localDir, c.i)}},
		Format: pb.Format_FORMAT_CSV, Mode: pb.ExportMode_EXPORT_MODE_SNAPSHOT, Cron: "0 0 1 1 *", TimeZone: "UTC"}}
}

// pick returns one of the client's schedules (never the Send now one when
// temp is set), or "" when it has none.
func (c *loadClient) pick(temp bool) string {
	var ids []string
	for id := range c.live {
		if !temp || id != c.sendID {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return ""
	}
	slices.Sort(ids) // map order is random; the rng decides
	return ids[c.rng.IntN(len(ids))]
}

func (c *loadClient) chooseOp() string {
	total := 0
	for _, o := range loadOps {
		total += o.weight
	}
	n := c.rng.IntN(total)
	for _, o := range loadOps {
		if n < o.weight {
			return o.name
		}
		n -= o.weight
	}
	return loadOps[0].name
}

// step makes one call and checks its answer against what the client knows.
func (c *loadClient) step(ctx context.Context, st *loadState, localDir string, httpc *http.Client, key, op string) {
	temps := len(c.live) - 1
	switch {
	case op == "CreateSchedule" && temps >= loadMaxTemp, (op == "UpdateSchedule" || op == "DeleteSchedule") && temps == 0:
		op = map[bool]string{true: "DeleteSchedule", false: "CreateSchedule"}[temps > 0]
	}
	scheds := pb.NewScheduleServiceClient(c.conn)
	wbs := pb.NewWorkbookServiceClient(c.conn)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	began := time.Now()
	ok := func() { c.lats[op] = append(c.lats[op], time.Since(began)) }
	switch op {
	case "GetSchedule":
		id := c.pick(false)
		r, err := scheds.GetSchedule(cctx, &pb.GetScheduleRequest{Id: id})
		if err != nil {
			st.callErr(op, err)
			return
		}
		ok()
		if r.GetSchedule().GetName() != c.live[id] {
			st.fail("lost update", "client %d: GetSchedule %s has name %q, acknowledged %q", c.i, id, r.GetSchedule().GetName(), c.live[id])
		}
	case "GetSchedule REST":
		id := c.pick(false)
		req, _ := http.NewRequestWithContext(cctx, http.MethodGet, c.httpBase+"/v1/schedules/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := httpc.Do(req)
		if err != nil {
			st.fail(op+" transport", "%v", err)
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			st.fail(fmt.Sprintf("%s HTTP %d", op, resp.StatusCode), "%v %s", err, body)
			return
		}
		ok()
		var out struct {
			Schedule struct{ Name string } `json:"schedule"`
		}
		if err := json.Unmarshal(body, &out); err != nil || out.Schedule.Name != c.live[id] {
			st.fail("lost update", "client %d: REST GetSchedule %s has name %q (%v), acknowledged %q", c.i, id, out.Schedule.Name, err, c.live[id])
		}
	case "ListSchedules":
		r, err := scheds.ListSchedules(cctx, &pb.ListSchedulesRequest{WorkbookId: c.wbID, PageSize: 50})
		if err != nil {
			st.callErr(op, err)
			return
		}
		ok()
		c.checkList(st, "ListSchedules", r.GetSchedules())
	case "GetWorkbook":
		r, err := wbs.GetWorkbook(cctx, &pb.GetWorkbookRequest{Id: c.wbID})
		if err != nil {
			st.callErr(op, err)
			return
		}
		ok()
		if r.GetWorkbook().GetName() != c.wbName {
			st.fail("lost update", "client %d: workbook name %q, acknowledged %q", c.i, r.GetWorkbook().GetName(), c.wbName)
		}
	case "QueryElement":
		r, err := wbs.QueryElement(cctx, &pb.QueryElementRequest{WorkbookId: c.wbID, ElementId: c.elID, PageSize: 20})
		if err != nil {
			st.callErr(op, err)
			return
		}
		ok()
		if len(r.GetRows()) == 0 {
			st.fail("QueryElement empty", "client %d: no rows", c.i)
		}
	case "CreateSchedule":
		c.seq++
		name := fmt.Sprintf("c%d-s%d", c.i, c.seq)
		r, err := scheds.CreateSchedule(cctx, c.newSchedule(localDir, name))
		if err != nil {
			c.unsure[name] = true
			st.callErr(op, err)
			return
		}
		ok()
		c.live[r.GetSchedule().GetId()] = name
	case "UpdateSchedule":
		id := c.pick(true)
		c.seq++
		name := fmt.Sprintf("c%d-s%d", c.i, c.seq)
		r, err := scheds.UpdateSchedule(cctx, &pb.UpdateScheduleRequest{Schedule: &pb.Schedule{Id: id, Name: name},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}}})
		if err != nil {
			st.callErr(op, err)
			c.unsure[name] = true
			return
		}
		ok()
		if r.GetSchedule().GetName() != name {
			st.fail("UpdateSchedule answer", "client %d: answered name %q, sent %q", c.i, r.GetSchedule().GetName(), name)
		}
		c.live[id] = name
		c.updates++
	case "DeleteSchedule":
		id := c.pick(true)
		if _, err := scheds.DeleteSchedule(cctx, &pb.DeleteScheduleRequest{Id: id}); err != nil {
			st.callErr(op, err)
			c.unsure[c.live[id]] = true
			delete(c.live, id)
			return
		}
		ok()
		delete(c.live, id)
		c.deleted = append(c.deleted, id)
	case "UpdateWorkbook":
		c.seq++
		name := fmt.Sprintf("load-%d-v%d", c.i, c.seq)
		if _, err := wbs.UpdateWorkbook(cctx, &pb.UpdateWorkbookRequest{Workbook: &pb.Workbook{Id: c.wbID, Name: name},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}}}); err != nil {
			st.callErr(op, err)
			return
		}
		ok()
		c.wbName = name
		c.updates++
	case "SendNow":
		c.sendNow(cctx, ctx, st, scheds, began)
	}
}

// sendNow follows a Send now to its end, and (every other one) watches the
// same run from the other replica at the same time.
// ctx bounds the call, bound the watcher (which may outlive it).
func (c *loadClient) sendNow(ctx, bound context.Context, st *loadState, scheds pb.ScheduleServiceClient, began time.Time) {
	stream, err := scheds.SendNow(ctx, &pb.SendNowRequest{Id: c.sendID})
	watch := c.rng.IntN(2) == 0
	msgs, err := recvAll(stream, err, func(first *pb.ExportProgress) {
		c.lats["SendNow first message"] = append(c.lats["SendNow first message"], time.Since(began))
		if watch {
			st.wg.Add(1)
			st.watchers.Add(1)
			go c.watch(bound, st, first.GetRunId())
		}
	})
	if err != nil {
		st.callErr("SendNow", err)
		return
	}
	fr, ok := checkStream(st, fmt.Sprintf("client %d SendNow", c.i), msgs)
	if !ok {
		return
	}
	c.lats["SendNow"] = append(c.lats["SendNow"], time.Since(began))
	c.runs = append(c.runs, fr)
}

// watch follows WatchExportRun of a run on the other replica (the same
// server on SQLite) to its end.
func (c *loadClient) watch(ctx context.Context, st *loadState, runID string) {
	defer st.wg.Done()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	began := time.Now()
	stream, err := pb.NewScheduleServiceClient(c.other).WatchExportRun(ctx, &pb.WatchExportRunRequest{Id: runID})
	msgs, err := recvAll(stream, err, nil)
	if err != nil {
		st.callErr("WatchExportRun", err)
		return
	}
	if _, ok := checkStream(st, fmt.Sprintf("client %d WatchExportRun %s", c.i, runID), msgs); ok {
		d := time.Since(began)
		st.mu.Lock()
		st.watchLats = append(st.watchLats, d)
		st.mu.Unlock()
	}
}

// recvAll reads a progress stream (err: the call's) to its end; first,
// when set, sees the first message as it arrives.
func recvAll[M interface{ GetProgress() *pb.ExportProgress }](stream interface{ Recv() (M, error) }, err error,
	first func(*pb.ExportProgress)) ([]*pb.ExportProgress, error) {
	var msgs []*pb.ExportProgress
	for err == nil {
		var m M
		if m, err = stream.Recv(); err == nil {
			msgs = append(msgs, m.GetProgress())
			if len(msgs) == 1 && first != nil {
				first(msgs[0])
			}
		}
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return msgs, err
}

// checkStream: a progress stream that ended cleanly has exactly one
// terminal message, its last, SUCCEEDED, all of one run.
func checkStream(st *loadState, label string, msgs []*pb.ExportProgress) (finishedRun, bool) {
	if len(msgs) == 0 {
		st.fail("terminal messages", "%s: the stream ended without a message", label)
		return finishedRun{}, false
	}
	terminals := 0
	for _, m := range msgs {
		if testenv.IsTerminal(m.GetPhase()) {
			terminals++
		}
		if m.GetRunId() != msgs[0].GetRunId() {
			st.fail("stream run id", "%s: messages of runs %s and %s", label, msgs[0].GetRunId(), m.GetRunId())
			return finishedRun{}, false
		}
	}
	if terminals != 1 || !testenv.IsTerminal(msgs[len(msgs)-1].GetPhase()) {
		st.fail("terminal messages", "%s: %d terminal messages in %d, last %v", label, terminals, len(msgs), msgs[len(msgs)-1].GetPhase())
		return finishedRun{}, false
	}
	last := msgs[len(msgs)-1]
	if last.GetPhase() != pb.ExportPhase_EXPORT_PHASE_SUCCEEDED {
		st.fail("run not SUCCEEDED", "%s: run %s ended %v: %v", label, last.GetRunId(), last.GetPhase(), last.GetError())
		return finishedRun{}, false
	}
	return finishedRun{id: last.GetRunId(), uri: last.GetObjectUri(), phase: last.GetPhase()}, true
}

// checkList compares a listing of the client's workbook with what it was
// told: every acknowledged schedule with its acknowledged name, nothing
// deleted, nothing unknown (unless a failed call may have written it).
func (c *loadClient) checkList(st *loadState, label string, got []*pb.Schedule) {
	seen := map[string]bool{}
	for _, s := range got {
		seen[s.GetId()] = true
		want, ok := c.live[s.GetId()]
		switch {
		case !ok && slices.Contains(c.deleted, s.GetId()):
			st.fail("lost delete", "client %d %s: deleted schedule %s is listed", c.i, label, s.GetId())
		case !ok && !c.unsure[s.GetName()]:
			st.fail("unknown schedule", "client %d %s: schedule %s %q was never acknowledged", c.i, label, s.GetId(), s.GetName())
		case ok && s.GetName() != want && !c.unsure[s.GetName()]:
			st.fail("lost update", "client %d %s: schedule %s is %q, acknowledged %q", c.i, label, s.GetId(), s.GetName(), want)
		}
	}
	for id := range c.live {
		if !seen[id] {
			st.fail("lost create", "client %d %s: acknowledged schedule %s %q is missing", c.i, label, id, c.live[id])
		}
	}
}

// verify reads everything the client was told it wrote, through the other
// replica: its schedules and names, its deletes gone, its workbook's name,
// every finished run's state and object.
func (c *loadClient) verify(ctx context.Context, st *loadState) {
	scheds := pb.NewScheduleServiceClient(c.other)
	r, err := scheds.ListSchedules(ctx, &pb.ListSchedulesRequest{WorkbookId: c.wbID, PageSize: 50})
	if err != nil {
		st.callErr("verify ListSchedules", err)
		return
	}
	c.checkList(st, "final ListSchedules", r.GetSchedules())
	for _, id := range c.deleted {
		if _, err := scheds.GetSchedule(ctx, &pb.GetScheduleRequest{Id: id}); status.Code(err) != codes.NotFound {
			st.fail("lost delete", "client %d: GetSchedule of deleted %s: %v", c.i, id, err)
		}
	}
	wb, err := pb.NewWorkbookServiceClient(c.other).GetWorkbook(ctx, &pb.GetWorkbookRequest{Id: c.wbID})
	if err != nil {
		st.callErr("verify GetWorkbook", err)
	} else if wb.GetWorkbook().GetName() != c.wbName {
		st.fail("lost update", "client %d: final workbook name %q, acknowledged %q", c.i, wb.GetWorkbook().GetName(), c.wbName)
	}
	for _, run := range c.runs {
		got, err := scheds.GetExportRun(ctx, &pb.GetExportRunRequest{Id: run.id})
		if err != nil {
			st.callErr("verify GetExportRun", err)
			continue
		}
		if got.GetRun().GetState() != pb.RunState_RUN_STATE_SUCCEEDED || got.GetRun().GetObjectUri() != run.uri {
			st.fail("run record", "client %d: run %s is %v %q, streamed %v %q", c.i, run.id,
				got.GetRun().GetState(), got.GetRun().GetObjectUri(), run.phase, run.uri)
		}
		if _, err := os.Stat(strings.TrimPrefix(run.uri, "file://")); err != nil {
			st.fail("object missing", "client %d: run %s: %v", c.i, run.id, err)
		}
	}
}

func loadReport(section string, rs []loadRun) string {
	var b strings.Builder
	if section == "soak" {
		b.WriteString("## Soak: the load test for longer\n\n")
	} else {
		b.WriteString("## Load: many clients mixing reads, writes, Send nows and watchers\n\n")
	}
	target := map[bool]string{true: "make soak", false: "make bench-load"}[section == "soak"]
	fmt.Fprintf(&b, "Measured %s by `%s` (bench/load_test.go TestLoad; its 40-client, 8 s smoke runs in `make test`\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), target)
	b.WriteString("with the same assertions). Every client has its own gRPC connection and owns its workbook (element: a few\n" +
		"static AUDIT_LOGS rows), a Send now schedule and up to 6 more schedules, and calls back to back, choosing by weight\n")
	total := 0
	for _, o := range loadOps {
		total += o.weight
	}
	fmt.Fprintf(&b, "(of %d): ", total)
	for i, o := range loadOps {
		sep := ", "
		switch {
		case i == len(loadOps)-1:
			sep = ".\n"
		case i%5 == 4:
			sep = ",\n"
		}
		fmt.Fprintf(&b, "%s %d%s", o.name, o.weight, sep)
	}
	b.WriteString("Every other Send now (CSV to a LOCAL integration) is watched with\n" +
		"WatchExportRun from the other replica. On PostgreSQL two replicas share the database and the clients alternate\n" +
		"between them; SQLite is one process. Asserted (the run fails otherwise): no call failed (no INTERNAL, UNAVAILABLE,\n" +
		"ABORTED, DEADLINE_EXCEEDED, REST 5xx; RESOURCE_EXHAUSTED from the Send now limits, raised to twice the clients, is\n" +
		"counted), no `database is locked`/SQLITE_BUSY in the logs, every read of a client's own resources and a final\n" +
		"check through the other replica saw every acknowledged create, update and delete, and every Send now and watcher\n" +
		"ended with exactly one terminal message, SUCCEEDED, with the run recorded and its file written. *SendNow* is the\n" +
		"call to its terminal message. Server(s), PostgreSQL and the clients share the 2 CPUs, and the machine was shared\n" +
		"with other builds and tests: the load average is the machine's.\n\n")
	b.WriteString("| backend | replicas | clients | seconds | calls | calls/s | Send nows | watchers | RESOURCE_EXHAUSTED | failures | acknowledged writes checked | load avg after |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %d | %d | %.0f | %d | %.0f | %d | %d | %d | 0 | %d schedules live, %d deleted, %d renames | %s |\n",
			r.Backend, r.Replicas, r.Clients, r.Seconds, r.total(), float64(r.total())/r.Seconds, r.SendNows, r.Watchers,
			r.Exhausted, r.Schedules, r.Deletes, r.Updates, r.Load)
	}
	b.WriteString("\n| backend | call | calls | calls/s | p50 | p99 | max |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		for _, s := range r.Stats {
			fmt.Fprintf(&b, "| %s | %s | %d | %.1f | %v | %v | %v |\n", r.Backend, s.Name, s.N, float64(s.N)/r.Seconds,
				roundDur(s.P50), roundDur(s.P99), roundDur(s.Max))
		}
	}
	b.WriteString("\nSend now's first message waits for the Send now limits (internal/export/limits.go): the organization's is a\n" +
		"COUNT of its active runs then the INSERT, serialised (a mutex on SQLite, an advisory lock on PostgreSQL; the\n" +
		"per-process limit is counted in memory), so under write contention Send nows queue there. Measured once\n" +
		"(2026-12-04, SQLite, 200 clients, 20 s): first message p50 2.36 s with the limits on, 0.20 s with both limits 0\n" +
		"(off), same throughput; nothing failed either way.\n\n")
	return b.String()
}

// roundDur keeps three significant digits or so: 10 µs under 10 ms, else 1 ms.
func roundDur(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

// Package integration_test drives the real `auditexport` binary over real
// sockets on 127.0.0.1, on SQLite and on PostgreSQL.
//
// Tests run in parallel (go test -parallel; `make test` sets it). The rule
// for a new top-level test: call t.Parallel() first, and own everything it
// touches — its servers (StartServer: own data dir, SQLite file or
// throw-away PostgreSQL database, ports from 127.0.0.1:0), its testenv
// MinIO/fake-gcs/Azurite/mailpit instances (per test, so bucket names and
// mail assertions see only this test's objects and messages), its temp
// dirs (t.TempDir). Never t.Setenv or os.Chdir (process-wide; t.Setenv
// panics in a parallel test): pass environment to the server with
// StartServerEnv. A test that keeps a core busy for long calls heavyTest, one
// that asserts against a fast scheduler clock calls timingTest (see cpuSlots).
// Stay serial (no t.Parallel) only when even light tests beside it would
// distort what it measures, and say why in a comment.
package integration_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	_ "modernc.org/sqlite"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/auth"
	"github.com/auditexport/auditexport/internal/testenv"
	"github.com/auditexport/auditexport/server"
)

var (
	binPath  string // built with -race: the servers of raceTest tests
	toolPath string // built without -race: every other server, and operator commands (seed)
	repoRoot string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// The test process marshals and parses API messages from many
	// goroutines too: build protobuf's and encoding/json's lazy caches
	// before any test runs, as the server does, or the race detector
	// reports their first concurrent use (seen: reflect.ptrTo under
	// protojson in grpcTransport.Call vs RESTStream, failing every test
	// running at that moment).
	server.WarmUp()
	wd, _ := os.Getwd()
	repoRoot = filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "auditexport-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "auditexport")
	// Seeding hundreds of thousands of rows through the race detector costs
	// a minute per test; data preparation does not need it.
	toolPath = filepath.Join(dir, "auditexport-tool")
	// Both builds at once: they share no work, and each ends in a link that
	// keeps one core busy.
	builds := []struct {
		what string
		args []string
	}{
		{"auditexport", []string{"build", "-race", "-o", binPath, "./cmd/auditexport"}},
		{"auditexport (tool)", []string{"build", "-o", toolPath, "./cmd/auditexport"}},
	}
	errs := make([]error, len(builds))
	var wg sync.WaitGroup
	for i, b := range builds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			build := exec.Command("go", b.args...)
			build.Dir = repoRoot
			build.Stdout, build.Stderr = os.Stderr, os.Stderr
			if err := build.Run(); err != nil {
				errs[i] = fmt.Errorf("building %s: %w", b.what, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Under CI (a fresh clone) the tests must leave the checkout as they
	// found it: a test writing into the repository (as the console test's
	// screenshots did into docs/console/) fails the run.
	if os.Getenv("CI") == "" {
		return m.Run()
	}
	before := checkoutStatus()
	code := m.Run()
	if after := checkoutStatus(); after != before {
		fmt.Fprintf(os.Stderr, "the tests changed the checkout (git status --porcelain):\nbefore:\n%s\nafter:\n%s\n", before, after)
		return 1
	}
	return code
}

// checkoutStatus is `git status --porcelain` of the repository (or the
// error running it).
func checkoutStatus() string {
	cmd := exec.Command("git", "status", "--porcelain")
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("git status: %v: %s", err, out)
	}
	return string(out)
}

// backends lists the databases every flow runs on. PostgreSQL is required in
// CI; locally it is skipped only when unreachable.
func backends(t *testing.T) []string {
	t.Helper()
	if !testenv.PostgresReachable(t) {
		return []string{"sqlite"}
	}
	return []string{"sqlite", "postgres"}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// createPGDatabase makes a throw-away database dropped at cleanup.
func createPGDatabase(t *testing.T) string {
	t.Helper()
	return testenv.NewPostgresDatabase(t, "ae_it_")
}

// Server is a running auditexport process.
type Server struct {
	t        *testing.T
	Backend  string
	DataDir  string
	DSN      string
	GRPCAddr string
	HTTPURL  string
	AdminKey string
	// LocalRoot is the server's --local-root (a replica shares its primary's).
	LocalRoot string
	Conn      *grpc.ClientConn
	orgIDs    sync.Map // API key -> organization id
	env       []string // added to the process environment
	proc      *testenv.ServerProcess
	// logsBefore is the output of the earlier processes (before a restart).
	logsBefore string
	tailLogged bool // logTailIfFailed ran
	// Bin is the server binary (default: the race build of this tree; the
	// upgrade fixture generator runs an older commit's).
	Bin string
	// StopWait is how long Stop waits after SIGTERM (default 20 s): a test
	// whose server drains a long export during a long --shutdown-grace
	// raises it.
	StopWait time.Duration
}

// The parallel tests share the machine's cores (CI has two). Most of them
// wait on servers and I/O; a few keep the CPU busy for minutes (exporting,
// seeding or checking hundreds of thousands of rows through the race
// detector) or assert on scheduling against a 30x-120x clock, where a
// scheduler starved for 2 real seconds misses a period. Those take a share
// of cpuSlots for their whole run: heavyTest one slot, timingTest all of
// them (only light tests run beside it). Grants are first come, first served,
// except that a heavyPhase goes before every waiting whole test: its test is
// running already and holds servers, databases and storage while it waits,
// and the storage fault subtests, which take a slot only for their seed and
// upload, otherwise waited behind every heavy test and ran last.
// Never in a test whose own subtests are parallel: it would hold its share
// until they finish, while they wait for a -parallel permit held by tests
// waiting for that share (with the default -parallel, GOMAXPROCS, that
// deadlocked).
var (
	cpuSlots = slotsFromEnv()
	cpu      = struct {
		sync.Mutex
		free  int
		queue []*cpuWaiter
	}{free: cpuSlots}
)

type cpuWaiter struct {
	n     int
	phase bool // a heavyPhase: served before whole tests
	ready chan struct{}
}

// heavyTest marks a CPU-heavy test: call it right after t.Parallel().
func heavyTest(t *testing.T) { t.Helper(); needCPU(t, 1, false) }

// heavyPhase takes one CPU slot for a heavy part of a test and returns the
// func that gives it back (idempotent; at the latest at cleanup). A test
// that then only waits — for a fault's retry budget to run out — gives its
// slot to others while it waits, and takes one again for its next heavy
// part.
func heavyPhase(t *testing.T) (release func()) { t.Helper(); return needCPU(t, 1, true) }

// timingTest marks a test whose assertions need the CPU to itself apart from
// light tests (a fast scheduler clock): call it right after t.Parallel().
func timingTest(t *testing.T) { t.Helper(); needCPU(t, cpuSlots, false) }

// Which build a test's servers run. The race detector costs a server 2-10x
// CPU, and CI's two cores are the limit of its wall time (docs/CI.md): the
// servers of most integration tests, which check what the product does over
// its API, run the plain build; the servers of the tests marked raceTest,
// which drive the server's concurrent paths end to end (Send now progress
// fan-out and cancel, concurrent Send nows, several replicas dispatching,
// shutdown while runs are in flight, the core flow on both backends), run
// the -race build, with GORACE=halt_on_error=1 so a race fails the test. The
// same code also runs under -race in-process, in the -race unit tests of
// internal/export, internal/scheduler, internal/destination and server. The
// test process itself is always under -race. docs/CI.md lists the set.
var raceTests, volumeTests sync.Map

// raceTest marks a test (and its subtests) whose servers run the -race
// build.
func raceTest(t *testing.T) { t.Helper(); raceTests.Store(t.Name(), true) }

// volumeTest marks a test whose servers export tens of thousands to
// millions of rows, for what the volume shows (streaming, progress, a
// cancel or a fault in the middle of a long upload, memory): its servers
// (replicas included) run the plain build even inside a raceTest.
func volumeTest(t *testing.T) { t.Helper(); volumeTests.Store(t.Name(), true) }

// marked: t or a test it is a subtest of is in set.
func marked(set *sync.Map, t *testing.T) bool {
	for name := t.Name(); name != ""; {
		if _, ok := set.Load(name); ok {
			return true
		}
		i := strings.LastIndexByte(name, '/')
		if i < 0 {
			break
		}
		name = name[:i]
	}
	return false
}

// serverBin is the build t's servers run.
func serverBin(t *testing.T) string {
	if marked(&raceTests, t) && !marked(&volumeTests, t) {
		return binPath
	}
	return toolPath
}

func needCPU(t *testing.T, n int, phase bool) (release func()) {
	t.Helper()
	start := time.Now()
	cpu.Lock()
	if len(cpu.queue) == 0 && cpu.free >= n {
		cpu.free -= n
		cpu.Unlock()
	} else {
		w := &cpuWaiter{n, phase, make(chan struct{})}
		at := len(cpu.queue)
		if phase {
			// After the phases already waiting, before the first whole test.
			if i := slices.IndexFunc(cpu.queue, func(q *cpuWaiter) bool { return !q.phase }); i >= 0 {
				at = i
			}
		}
		cpu.queue = slices.Insert(cpu.queue, at, w)
		cpu.Unlock()
		<-w.ready
		t.Logf("waited %s for %d of %d CPU slots", time.Since(start).Round(time.Millisecond), n, cpuSlots)
	}
	release = sync.OnceFunc(func() {
		cpu.Lock()
		defer cpu.Unlock()
		cpu.free += n
		for len(cpu.queue) > 0 && cpu.free >= cpu.queue[0].n {
			w := cpu.queue[0]
			cpu.queue = cpu.queue[1:]
			cpu.free -= w.n
			close(w.ready)
		}
	})
	t.Cleanup(release)
	return release
}

// StartServer runs `auditexport serve` on fresh storage of the backend.
func StartServer(t *testing.T, backend string, extra ...string) *Server {
	t.Helper()
	return StartServerEnv(t, backend, nil, extra...)
}

// StartServerEnv is StartServer with env (KEY=value) added to the process's
// environment, also on restarts: the parallel tests' way to what t.Setenv
// would do for the whole test binary.
func StartServerEnv(t *testing.T, backend string, env []string, extra ...string) *Server {
	t.Helper()
	return startServerDSN(t, backend, "", env, extra...)
}

// startServerDSN is StartServerEnv on the database dsn ("": fresh storage
// of the backend), e.g. a PostgreSQL database reached through a fault proxy.
func startServerDSN(t *testing.T, backend, dsn string, env []string, extra ...string) *Server {
	t.Helper()
	s := &Server{t: t, Backend: backend, DataDir: t.TempDir(), env: env, DSN: dsn}
	s.LocalRoot = filepath.Join(s.DataDir, "exports")
	s.AdminKey, _, _ = auth.NewAPIKey()
	switch {
	case dsn != "":
	case backend == "sqlite":
		s.DSN = "sqlite://" + filepath.Join(s.DataDir, "auditexport.db")
	case backend == "postgres":
		s.DSN = createPGDatabase(t)
	default:
		t.Fatalf("unknown backend %q", backend)
	}
	s.start(extra...)
	return s
}

func (s *Server) start(extra ...string) {
	t := s.t
	args := append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--data-dir", s.DataDir, "--db", s.DSN, "--bootstrap-admin-key", s.AdminKey,
		"--allow-private-endpoints", "--shutdown-grace", "5s"}, extra...)
	bin := s.Bin
	if bin == "" {
		bin = serverBin(t)
	}
	p, err := testenv.StartServerProcess(bin, args, append(slices.Clone(s.env), "GORACE=halt_on_error=1"), 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if s.proc != nil {
		if err := s.proc.Unexpected(); err != nil {
			t.Error(err)
		}
		s.logsBefore += s.proc.Logs()
	}
	s.proc = p
	s.GRPCAddr, s.HTTPURL = p.GRPCAddr, "http://"+p.HTTPAddr
	conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	s.Conn = conn
	t.Cleanup(s.Stop)
}

// Logs returns everything the process printed so far (all its starts).
func (s *Server) Logs() string {
	if s.proc == nil {
		return ""
	}
	return s.logsBefore + s.proc.Logs()
}

// WaitLogs reports whether the process's output contains sub within
// timeout. Use it, not Logs, to assert that a line was logged: the line
// travels through a pipe and may trail the response that caused it.
func (s *Server) WaitLogs(sub string, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(s.Logs(), sub) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// Stop sends SIGTERM and waits (StopWait, default 20 s); a server that does
// not exit, or exits with an error, is a test failure. When the test has
// failed, the tail of the server's output goes into the test's log: a
// failure seen once in CI can then be read, not only rerun.
func (s *Server) Stop() {
	if s.proc == nil {
		return
	}
	defer s.logTailIfFailed()
	select {
	case <-s.proc.Done():
		if err := s.proc.Unexpected(); err != nil {
			s.t.Error(err)
		}
		return
	default:
	}
	if s.Conn != nil {
		_ = s.Conn.Close()
	}
	wait := s.StopWait
	if wait == 0 {
		wait = 20 * time.Second
	}
	if err := s.proc.Stop(wait); err != nil {
		s.t.Errorf("%v\n%s", err, s.Logs())
	}
}

// failedLogLines is how much of a server's output a failed test shows.
const failedLogLines = 60

// logTailIfFailed logs the last failedLogLines lines of the server's
// output if the test has failed (once per server).
func (s *Server) logTailIfFailed() {
	if !s.t.Failed() || s.tailLogged {
		return
	}
	s.tailLogged = true
	lines := strings.Split(strings.TrimRight(s.Logs(), "\n"), "\n")
	s.t.Logf("the test failed; last %d lines of the %s server's output (%s):\n%s",
		min(len(lines), failedLogLines), s.Backend, s.HTTPURL, strings.Join(lines[max(0, len(lines)-failedLogLines):], "\n"))
}

// Kill SIGKILLs the process (a crash: no drain, no requeue, no abort) and
// waits until it is gone; unlike Stop it expects no exit code.
func (s *Server) Kill() {
	s.t.Helper()
	if s.proc == nil {
		return
	}
	s.proc.Kill()
	if s.Conn != nil {
		_ = s.Conn.Close()
	}
}

// Signal sends sig to the running process.
func (s *Server) Signal(sig os.Signal) error { return s.proc.Signal(sig) }

// Pid is the running process's id.
func (s *Server) Pid() int { return s.proc.Pid() }

// Restart stops and starts the process on the same storage.
func (s *Server) Restart() {
	s.Stop()
	s.start()
}

// OrgID is the organization of the API key (the bootstrap admin's for "").
func (s *Server) OrgID(key string) string {
	s.t.Helper()
	if key == "" {
		key = s.AdminKey
	}
	if id, ok := s.orgIDs.Load(key); ok {
		return id.(string)
	}
	me, err := pb.NewAccountServiceClient(s.Conn).GetCurrentUser(Ctx(key), &pb.GetCurrentUserRequest{})
	if err != nil || me.GetUser().GetOrganizationId() == "" {
		s.t.Fatalf("GetCurrentUser for the organization id: %v", err)
	}
	s.orgIDs.Store(key, me.GetUser().GetOrganizationId())
	return me.GetUser().GetOrganizationId()
}

// LocalDir is where the organization of key (the bootstrap admin's for "")
// may keep LOCAL destinations, <local-root>/<org id>, joined with sub.
func (s *Server) LocalDir(key string, sub ...string) string {
	s.t.Helper()
	return filepath.Join(append([]string{s.LocalRoot, s.OrgID(key)}, sub...)...)
}

// CreateOrg makes another organization with the operator command while the
// server runs and returns its first ADMIN's API key.
func (s *Server) CreateOrg(name string) string {
	s.t.Helper()
	out, err := exec.Command(toolPath, "org", "create", "--name", name, "--db", s.DSN).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			s.t.Fatalf("org create: %v\nstdout:\n%s\nstderr:\n%s", err, out, ee.Stderr)
		}
		s.t.Fatalf("org create: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// Ctx returns a context carrying key (and a fresh request id).
func Ctx(key string) context.Context {
	ctx := context.Background()
	if key != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
	}
	return ctx
}

// Clients are the typed gRPC clients.
type Clients struct {
	Integrations pb.IntegrationServiceClient
	Workbooks    pb.WorkbookServiceClient
	Schedules    pb.ScheduleServiceClient
	Accounts     pb.AccountServiceClient
}

// Clients returns typed clients on the server's connection.
func (s *Server) Clients() Clients {
	return Clients{
		Integrations: pb.NewIntegrationServiceClient(s.Conn),
		Workbooks:    pb.NewWorkbookServiceClient(s.Conn),
		Schedules:    pb.NewScheduleServiceClient(s.Conn),
		Accounts:     pb.NewAccountServiceClient(s.Conn),
	}
}

// REST performs an HTTP call and decodes the JSON answer.
func (s *Server) REST(method, path, key string, body any, headers ...string) (int, map[string]any, http.Header) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		case []byte:
			rd = bytes.NewReader(b)
		default:
			raw, err := json.Marshal(b)
			if err != nil {
				s.t.Fatal(err)
			}
			rd = bytes.NewReader(raw)
		}
	}
	req, err := http.NewRequest(method, s.HTTPURL+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := testenv.HTTP.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			s.t.Fatalf("%s %s: status %d, non-JSON body %q", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out, resp.Header
}

// OpenDB opens the server's database directly (for assertions only).
func (s *Server) OpenDB() *sql.DB {
	s.t.Helper()
	var db *sql.DB
	var err error
	if s.Backend == "sqlite" {
		db, err = sql.Open("sqlite", "file:"+strings.TrimPrefix(s.DSN, "sqlite://")+"?_pragma=busy_timeout(10000)")
	} else {
		db, err = sql.Open("pgx", s.DSN)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { db.Close() })
	return db
}

// Placeholder returns the n-th bind placeholder of the backend.
func (s *Server) Placeholder(n int) string {
	if s.Backend == "postgres" {
		return fmt.Sprintf("$%d", n)
	}
	return "?"
}

// getPath walks a decoded JSON document: getPath(m, "storageIntegration", "id").
func getPath(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

func getString(m map[string]any, path ...string) string {
	s, _ := getPath(m, path...).(string)
	return s
}

// Replica starts another server process on the same database (a replica
// sharing PostgreSQL), with its own data dir but the same master key and
// local export root.
func (s *Server) Replica(t *testing.T, extra ...string) *Server {
	t.Helper()
	r := &Server{t: t, Backend: s.Backend, DataDir: t.TempDir(), DSN: s.DSN, AdminKey: s.AdminKey, LocalRoot: s.LocalRoot, env: s.env}
	key, err := os.ReadFile(filepath.Join(s.DataDir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.DataDir, "master.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	r.start(append([]string{"--local-root", s.LocalRoot}, extra...)...)
	return r
}

// slotsFromEnv: AUDITEXPORT_TEST_CPU_SLOTS, or one more than the CPUs
// (at least 3). A heavy test also waits on its servers, storage and
// database; with its servers on the plain build (raceTest) a slot per CPU
// left the cores partly idle: on 2 cores, 3 slots kept them 88-99% busy and
// took integration_test from 748 s to 590 s (docs/CI.md).
func slotsFromEnv() int {
	if n, err := strconv.Atoi(os.Getenv("AUDITEXPORT_TEST_CPU_SLOTS")); err == nil && n > 0 {
		return n
	}
	return max(3, runtime.NumCPU()+1)
}

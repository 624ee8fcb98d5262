// Package testenv starts real storage and mail servers for tests: MinIO (S3),
// fake-gcs-server (GCS), Azurite (Azure Blob) and mailpit (SMTP + HTTP API),
// and runs DuckDB (through Node) as an independent reader of exported files.
//
// The tools are installed, pinned, into <repo>/.tools by
// scripts/install-test-tools.sh. When a tool is missing a test is skipped
// locally and fails under CI (CI env var set), so a CI that forgot to install
// the tools cannot pass silently.
//
// Every server listens on 127.0.0.1 on a free port, keeps its data in
// t.TempDir() and is stopped in t.Cleanup.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// HTTP makes the HTTP requests of tests (this package's and the integration
// tests'). It has a transport of its own: httptest.Server.Close closes the
// idle connections of the process-wide http.DefaultTransport, and a parallel
// test's request racing that close fails on a connection cut inside the test
// process ("use of closed network connection", "unexpected EOF") — a failure
// that says nothing about the product. TestNoDefaultHTTPTransport keeps
// http.DefaultTransport out of the test code.
var HTTP = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}

// InstallCommand is what a developer (or CI) runs to get the tools.
const InstallCommand = "scripts/install-test-tools.sh"

const (
	readyTimeout = 90 * time.Second // a cold node (Azurite) on a loaded 2-core machine has needed > 30 s
	stopGrace    = 5 * time.Second
	startTries   = 3
	settleTime   = 100 * time.Millisecond
)

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// Root returns the repo root: the nearest directory at or above the working
// directory that holds go.mod.
func Root(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootErr = err
			return
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				rootDir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = errors.New("testenv: no go.mod above the working directory")
				return
			}
			dir = parent
		}
	})
	if rootErr != nil {
		t.Fatalf("testenv.Root: %v", rootErr)
	}
	return rootDir
}

// ToolsDir is <repo>/.tools.
func ToolsDir(t testing.TB) string { return filepath.Join(Root(t), ".tools") }

// Tool names accepted by Require.
const (
	ToolMinIO   = "minio"
	ToolFakeGCS = "fake-gcs-server"
	ToolMailpit = "mailpit"
	ToolAzurite = "azurite-blob"
	ToolDuckDB  = "duckdb" // @duckdb/node-api, run through node
)

// Require returns the path of an installed test tool (see the Tool*
// constants). When the tool is missing the test fails under CI (CI env var
// non-empty) and is skipped otherwise, naming the install command either way.
func Require(t testing.TB, tool string) string {
	t.Helper()
	tools := ToolsDir(t)
	var path string
	switch tool {
	case ToolMinIO, ToolFakeGCS, ToolMailpit:
		path = filepath.Join(tools, "bin", tool)
	case ToolAzurite:
		path = filepath.Join(tools, "node", "node_modules", ".bin", "azurite-blob")
	case ToolDuckDB:
		path = filepath.Join(tools, "node", "node_modules", "@duckdb", "node-api", "package.json")
	default:
		t.Fatalf("testenv.Require: unknown tool %q", tool)
	}
	missing := ""
	if _, err := os.Stat(path); err != nil {
		missing = path
	} else if tool == ToolAzurite || tool == ToolDuckDB {
		if _, err := exec.LookPath("node"); err != nil {
			missing = "node (Node.js 20+) on PATH"
		}
	}
	if missing != "" {
		msg := fmt.Sprintf("test tool %s is not installed (%s missing); run %s", tool, missing, InstallCommand)
		if os.Getenv("CI") != "" {
			t.Fatalf("%s (CI is set, so this is a failure, not a skip)", msg)
		}
		t.Skip(msg)
	}
	return path
}

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// lockedBuffer collects a process's output; it is written by os/exec's copier
// goroutine and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	const max = 1 << 20 // keep the tail of a chatty server bounded
	if l.b.Len()+len(p) > max {
		keep := l.b.Bytes()[l.b.Len()/2:]
		nb := append([]byte("...[truncated]...\n"), keep...)
		l.b.Reset()
		l.b.Write(nb)
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// process is one running server.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done
}

func startProcess(name, bin string, args, env []string, dir string, out *lockedBuffer) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	// Own process group, so that a wrapper (e.g. azurite-blob's node) and
	// anything it spawns are signalled together.
	// Pdeathsig: the server dies with the test binary even when that binary is
	// killed (go test -timeout panic, ^C), instead of lingering on its port.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) signal(sig syscall.Signal) {
	// Negative pid: the whole process group.
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// stop sends SIGTERM and, after stopGrace, SIGKILL; it returns once the
// process has exited.
func (p *process) stop() {
	if p.exited() {
		return
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		p.signal(syscall.SIGKILL)
		<-p.done
	}
}

// kill sends SIGKILL at once (a crash, for fault tests).
func (p *process) kill() {
	if p.exited() {
		return
	}
	p.signal(syscall.SIGKILL)
	<-p.done
}

// errExited reports that the process died before it became ready (most often:
// its port was taken in the meantime), which is worth a retry on a new port.
var errExited = errors.New("process exited before it was ready")

// waitReady polls ready until it returns nil, the process exits, or the
// timeout passes.
func waitReady(p *process, timeout time.Duration, ready func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if p.exited() {
			return fmt.Errorf("%w (%v)", errExited, p.err)
		}
		if p.out != nil && strings.Contains(p.out.String(), "address already in use") {
			// Another process took the port between freePort and the
			// server's bind. MinIO logs it and stays up without listening:
			// a clash to retry on fresh ports, like a server that exits.
			return fmt.Errorf("%w: its port was taken (address already in use)", errExited)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = ready(ctx)
		cancel()
		if last == nil {
			// A server that lost the race for its port exits at once; if
			// another server of the same kind holds that port, the probe
			// above may have been answered by it. Give ours a moment to die.
			select {
			case <-p.done:
				return fmt.Errorf("%w right after a probe succeeded (port taken by another server?) (%v)", errExited, p.err)
			case <-time.After(settleTime):
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %v", timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// httpOK is a readiness probe: GET url answers 200.
func httpOK(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := HTTP.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// server describes how to start one kind of server.
type server struct {
	name   string
	bin    string
	nports int      // how many free ports to pick per attempt
	env    []string // added to the test's environment
	args   func(ports []int) []string
	ready  func(ports []int) func(context.Context) error
	// hardStop: the cleanup sends SIGKILL at once. For servers whose data is
	// throwaway and whose SIGTERM handling waits for idle keep-alive client
	// connections (Azurite), which would cost the full grace period.
	hardStop bool
}

// launch starts a server up to startTries times, each time on fresh ports,
// until it is ready, and registers its stop in t.Cleanup. It returns the
// process and the ports of the attempt that worked.
func launch(t testing.TB, s server) (*process, []int) {
	t.Helper()
	var lastErr error
	var lastOut string
	for try := 0; try < startTries; try++ {
		ports := make([]int, s.nports)
		for i := range ports {
			ports[i] = freePort(t)
		}
		out := &lockedBuffer{}
		p, err := startProcess(s.name, s.bin, s.args(ports), s.env, "", out)
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		err = waitReady(p, readyTimeout, s.ready(ports))
		if err == nil {
			if s.hardStop {
				t.Cleanup(p.kill)
			} else {
				t.Cleanup(p.stop)
			}
			return p, ports
		}
		p.stop()
		lastErr, lastOut = err, out.String()
		if !errors.Is(err, errExited) {
			break // hung, not a port clash: retrying would only take another 30 s
		}
	}
	t.Fatalf("testenv: %s did not start: %v\n--- %s output ---\n%s", s.name, lastErr, s.name, lastOut)
	return nil, nil
}

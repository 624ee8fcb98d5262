package testenv

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ServerProcess is a running `auditexport serve` started by a test
// (integration_test's harness and bench/ both start theirs with
// StartServerProcess): its stdout and stderr captured whole, its gRPC and
// HTTP addresses read from its "grpc listening" / "http listening" log
// lines (start it with --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0).
type ServerProcess struct {
	GRPCAddr string // host:port
	HTTPAddr string // host:port

	cmd  *exec.Cmd
	mu   sync.Mutex
	logs strings.Builder
	done chan struct{}
	// asked: the test stopped, killed or signalled the process, so its
	// exit is expected (see Unexpected).
	asked atomic.Bool
}

// StartServerProcess runs bin with args (env added to the test's
// environment) and waits up to timeout for both listening lines. The
// process is killed if the test binary dies (Pdeathsig).
func StartServerProcess(bin string, args, env []string, timeout time.Duration) (*ServerProcess, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &ServerProcess{cmd: cmd, done: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addrs := make(chan [2]string, 1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.copyLog(stdout, nil) }()
	go func() { defer wg.Done(); p.copyLog(stderr, addrs) }()
	go func() { wg.Wait(); _ = cmd.Wait(); close(p.done) }()
	select {
	case a := <-addrs:
		p.GRPCAddr, p.HTTPAddr = a[0], a[1]
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("server exited during start:\n%s", p.Logs())
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-p.done
		return nil, fmt.Errorf("server did not start within %s:\n%s", timeout, p.Logs())
	}
}

// logRecord is what copyLog reads of a log line.
type logRecord struct{ Msg, Addr string }

func init() {
	// encoding/json builds a type's decoder on its first use. Built here,
	// before parallel tests start servers: the race detector reported the
	// first uses by several copyLog goroutines at once racing inside
	// encoding/json's field cache, and failed every test running then
	// (integration_test, 2026-12-04: TestStorageSlowDown and two others).
	_ = json.Unmarshal([]byte(`{}`), new(logRecord))
}

func (p *ServerProcess) copyLog(r io.Reader, addrs chan<- [2]string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var grpcAddr, httpAddr string
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.logs.WriteString(line + "\n")
		p.mu.Unlock()
		if addrs == nil || (grpcAddr != "" && httpAddr != "") {
			continue
		}
		var rec logRecord
		if json.Unmarshal([]byte(line), &rec) == nil {
			switch rec.Msg {
			case "grpc listening":
				grpcAddr = rec.Addr
			case "http listening":
				httpAddr = rec.Addr
			}
			if grpcAddr != "" && httpAddr != "" {
				addrs <- [2]string{grpcAddr, httpAddr}
			}
		}
	}
}

// Logs returns everything the process printed so far.
func (p *ServerProcess) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// WaitLogs reports whether the output contains sub within timeout. Use it,
// not Logs, to assert that a line was logged: the line travels through a
// pipe and may trail the response that caused it.
func (p *ServerProcess) WaitLogs(sub string, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(p.Logs(), sub) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// Done is closed when the process has exited and its output is read.
func (p *ServerProcess) Done() <-chan struct{} { return p.done }

// Pid is the process id.
func (p *ServerProcess) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process (any signal but SIGHUP counts as asking
// it to exit).
func (p *ServerProcess) Signal(sig os.Signal) error {
	if sig != syscall.SIGHUP {
		p.asked.Store(true)
	}
	return p.cmd.Process.Signal(sig)
}

// Unexpected reports an exit nobody asked for — a crash, a panic, a data
// race under GORACE=halt_on_error=1 — as an error carrying the exit code
// and the output; nil while the process runs or after Stop/Kill/Signal.
func (p *ServerProcess) Unexpected() error {
	select {
	case <-p.done:
	default:
		return nil
	}
	if p.asked.Load() {
		return nil
	}
	l := p.Logs()
	return fmt.Errorf("server exited by itself with code %d:\n%s%s", p.cmd.ProcessState.ExitCode(), RaceSummary(l), l)
}

// Kill kills the process at once and waits for it.
func (p *ServerProcess) Kill() {
	p.asked.Store(true)
	_ = p.cmd.Process.Kill()
	<-p.done
}

// ErrStopTimeout: the process did not exit within the wait after SIGTERM
// (it was killed).
var ErrStopTimeout = errors.New("server did not stop in time after SIGTERM")

// Stop sends SIGTERM and waits up to wait for the process to exit (then
// kills it and returns ErrStopTimeout); an exit code other than 0 is an
// error carrying the output. Stopping an exited process reports nothing.
func (p *ServerProcess) Stop(wait time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	p.asked.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(wait):
		p.Kill()
		return fmt.Errorf("%w (%s)", ErrStopTimeout, wait)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		l := p.Logs()
		return fmt.Errorf("server exited with code %d:\n%s%s", code, RaceSummary(l), l)
	}
	return nil
}

package testenv

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// ProxyMode is how a FaultProxy treats connections.
type ProxyMode int32

const (
	// Pass forwards bytes both ways.
	Pass ProxyMode = iota
	// Refuse accepts and resets at once (a dependency that is down).
	Refuse
	// Blackhole accepts and never answers (a dependency that hangs: the
	// client's own timeout is what ends the call).
	Blackhole
)

// FaultProxy is a TCP proxy on 127.0.0.1 in front of a real dependency, to
// make it misbehave while the service keeps running. SetMode applies to new
// connections; Cut resets the open ones (a connection reset mid-stream).
type FaultProxy struct {
	Addr   string // host:port to give the service instead of the target's
	target string
	mode   atomic.Int32
	ln     net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// StartFaultProxy proxies to target (host:port) until the test ends.
func StartFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &FaultProxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// SetMode changes how new connections are treated.
func (p *FaultProxy) SetMode(m ProxyMode) { p.mode.Store(int32(m)) }

// Cut resets every open connection.
func (p *FaultProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, not FIN
		}
		_ = c.Close()
	}
	clear(p.conns)
}

func (p *FaultProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *FaultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		switch ProxyMode(p.mode.Load()) {
		case Refuse:
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		case Blackhole:
			p.track(c)
			p.wg.Add(1)
			go func() { defer p.wg.Done(); _, _ = io.Copy(io.Discard, c) }()
		default:
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.track(c)
			p.track(up)
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(up, c); _ = up.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(c, up); _ = c.Close() }()
		}
	}
}

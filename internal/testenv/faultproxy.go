package testenv

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
// connections; Cut resets the open ones (a connection reset mid-stream);
// SetLatency and SetBandwidth slow down the open and the new ones alike.
type FaultProxy struct {
	Addr   string // host:port to give the service instead of the target's
	target string
	mode   atomic.Int32
	ln     net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup

	latency   atomic.Int64 // ns each forwarded chunk is held
	bandwidth atomic.Int64 // bytes/s per connection and direction (0: unlimited)
	refused   atomic.Int64
	upBytes   atomic.Int64
	frozen    atomic.Pointer[chan struct{}] // closed by Thaw; nil: forwarding
	trip      atomic.Pointer[[]byte]        // RefuseOn's or RefuseAfter's marker
	tripAfter atomic.Bool                   // the marker is RefuseAfter's
	tripped   atomic.Int64
	done      chan struct{} // closed when the test ends
}

// StartFaultProxy proxies to target (host:port) until the test ends.
func StartFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &FaultProxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		close(p.done)
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// SetMode changes how new connections are treated.
func (p *FaultProxy) SetMode(m ProxyMode) { p.mode.Store(int32(m)) }

// SetLatency holds every forwarded chunk (at most 32 KiB, one read) for d
// before passing it on, both ways (0: none).
func (p *FaultProxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// SetBandwidth limits each connection to bytesPerSec in each direction
// (0: unlimited).
func (p *FaultProxy) SetBandwidth(bytesPerSec int64) { p.bandwidth.Store(bytesPerSec) }

// Bandwidth is the limit SetBandwidth set (0: unlimited).
func (p *FaultProxy) Bandwidth() int64 { return p.bandwidth.Load() }

// Refused is how many connections Refuse mode has reset so far: a test
// waits on it to know the service kept trying while the dependency was down.
func (p *FaultProxy) Refused() int64 { return p.refused.Load() }

// BytesUp is how many bytes were forwarded from clients to the target.
func (p *FaultProxy) BytesUp() int64 { return p.upBytes.Load() }

// Freeze stops forwarding on the open connections, both ways, until Thaw:
// with SetMode(Blackhole) for new ones, a peer that stops answering in the
// middle of a request (it neither reads what it is sent nor answers, so
// the client's writes block once the socket buffers are full). A chunk
// being forwarded when Freeze is called still goes through.
func (p *FaultProxy) Freeze() {
	c := make(chan struct{})
	p.frozen.CompareAndSwap(nil, &c)
}

// Thaw resumes forwarding on the connections Freeze stopped.
func (p *FaultProxy) Thaw() {
	if c := p.frozen.Swap(nil); c != nil {
		close(*c)
	}
}

// RefuseOn arms a trip: the first chunk a client sends that contains marker
// (e.g. a key in a request line) is not forwarded; instead the proxy
// switches to Refuse and resets every open connection. It fails one
// particular request, deterministically, with the store down from then on.
func (p *FaultProxy) RefuseOn(marker string) {
	m := []byte(marker)
	p.tripAfter.Store(false)
	p.trip.Store(&m)
}

// refuseAfterDelay is how long RefuseAfter lets the target act on the
// chunk before resetting the connections.
const refuseAfterDelay = 500 * time.Millisecond

// RefuseAfter arms a trip that loses an answer: the first chunk a client
// sends that contains marker is forwarded, nothing the target sends back
// on that connection reaches the client, and half a second later (the
// target has acted on it) the proxy switches to Refuse and resets every
// open connection. A request that took effect, with its answer lost and
// the target down from then on.
func (p *FaultProxy) RefuseAfter(marker string) {
	m := []byte(marker)
	p.tripAfter.Store(true)
	p.trip.Store(&m)
}

// Tripped is how many times RefuseOn's or RefuseAfter's marker was seen.
func (p *FaultProxy) Tripped() int64 { return p.tripped.Load() }

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
			p.refused.Add(1)
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
			mute := new(atomic.Bool) // RefuseAfter: the answers are dropped
			go func() { defer p.wg.Done(); p.pipe(up, c, &p.upBytes, mute); _ = up.Close() }()
			go func() { defer p.wg.Done(); p.pipe(c, up, nil, mute); _ = c.Close() }()
		}
	}
}

// pipe copies src to dst, applying the current latency and bandwidth to
// each chunk, and counts the bytes in n (if not nil: the client's
// direction). The connection's answers (n nil) are dropped once mute is set.
func (p *FaultProxy) pipe(dst, src net.Conn, n *atomic.Int64, mute *atomic.Bool) {
	buf := make([]byte, 32<<10)
	var tail []byte // the last bytes read (RefuseOn)
	for {
		if c := p.frozen.Load(); c != nil {
			select {
			case <-*c:
			case <-p.done:
				return
			}
		}
		size := len(buf)
		bw := p.bandwidth.Load()
		if bw > 0 {
			size = int(min(int64(size), max(1, bw/20))) // ~50 ms of budget a chunk
		}
		k, err := src.Read(buf[:size])
		if k > 0 && n != nil {
			if m := p.trip.Load(); m != nil {
				// The marker may straddle two reads: look at the end of
				// the previous one too.
				seen := append(tail, buf[:k]...)
				if bytes.Contains(seen, *m) && p.trip.CompareAndSwap(m, nil) {
					p.tripped.Add(1)
					if !p.tripAfter.Load() {
						p.SetMode(Refuse)
						p.Cut()
						return
					}
					mute.Store(true)
					time.AfterFunc(refuseAfterDelay, func() { p.SetMode(Refuse); p.Cut() })
				}
				tail = append(tail[:0], seen[max(0, len(seen)-len(*m)+1):]...)
			}
		}
		if k > 0 && n == nil && mute.Load() {
			k = 0 // an answer RefuseAfter loses
		}
		if k > 0 {
			if d := time.Duration(p.latency.Load()); d > 0 {
				time.Sleep(d)
			}
			if bw > 0 {
				time.Sleep(time.Duration(int64(k) * int64(time.Second) / bw))
			}
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return
			}
			if n != nil {
				n.Add(int64(k))
			}
		}
		if err != nil {
			return
		}
	}
}

package destination

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// DefaultStallTimeout is how long a storage connection may transfer nothing
// (in either direction) while in use before it is given up
// (--storage-stall-timeout).
const DefaultStallTimeout = 60 * time.Second

// stallChunk bounds one Write, so a large write that keeps moving pushes the
// deadline forward while it drains (however slow the link).
const stallChunk = 32 << 10

// StallError is a storage connection that transferred no byte for the stall
// timeout: a peer that stopped answering (a black hole). It is a timeout
// (net.Error), so the SDKs retry the request and the run retries the
// upload like any transient network failure.
type StallError struct{ After time.Duration }

func (e *StallError) Error() string {
	return fmt.Sprintf("storage connection stalled: no data sent or received for %s (--storage-stall-timeout)", e.After)
}
func (e *StallError) Timeout() bool   { return true }
func (e *StallError) Temporary() bool { return true }
func (e *StallError) Unwrap() error   { return os.ErrDeadlineExceeded }

// stallConn fails a connection that transfers nothing for d: every read
// and write starts by pushing the connection's deadline (both directions)
// to d from now, so a pending read (the transport waiting for a response)
// is kept alive by the request body still going out, and vice versa. An
// idle kept-alive connection whose deadline passes is simply closed by the
// transport.
type stallConn struct {
	net.Conn
	d time.Duration
}

func (c *stallConn) push() { _ = c.Conn.SetDeadline(time.Now().Add(c.d)) }

func (c *stallConn) Read(p []byte) (int, error) {
	c.push()
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.push()
	}
	return n, c.stalled("read", err)
}

func (c *stallConn) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		end := min(len(p), written+stallChunk)
		c.push()
		n, err := c.Conn.Write(p[written:end])
		written += n
		if err != nil {
			return written, c.stalled("write", err)
		}
	}
	return written, nil
}

// The transport and TLS set no deadlines of their own on the connection; a
// caller that does (none today) replaces ours until the next read or write.
func (c *stallConn) stalled(op string, err error) error {
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return &net.OpError{Op: op, Net: "tcp", Addr: c.RemoteAddr(), Err: &StallError{After: c.d}}
	}
	return err
}

package destination

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"gocloud.dev/blob"
)

// TestStallTimeoutBlackHole: a peer that accepts the connection and never
// answers fails the request after the stall timeout with a StallError, a
// net.Error timeout (retried as transient), naming the flag.
func TestStallTimeoutBlackHole(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(io.Discard, c) // reads the request, never answers
	}()
	hc := httpClient(OpenOptions{AllowPrivateEndpoints: true, StallTimeout: 300 * time.Millisecond})
	start := time.Now()
	resp, err := hc.Post("http://"+ln.Addr().String()+"/x", "text/plain", strings.NewReader("body"))
	took := time.Since(start)
	if err == nil {
		resp.Body.Close()
		t.Fatal("request to a black hole succeeded")
	}
	var se *StallError
	var ne net.Error
	if !errors.As(err, &se) || !errors.As(err, &ne) || !ne.Timeout() || !strings.Contains(err.Error(), "--storage-stall-timeout") {
		t.Errorf("error %v (%T), want a StallError timeout", err, err)
	}
	if took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("failed after %s, want about the 300ms stall timeout", took)
	}
	hc.CloseIdleConnections()
	ln.Close()
	<-done
}

// TestStallTimeoutSlowTransfer: a response that trickles for longer than
// the stall timeout, but never pauses that long, is read completely.
func TestStallTimeoutSlowTransfer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if n != 3<<20 {
			http.Error(w, "short body", http.StatusBadRequest)
			return
		}
		for range 10 {
			_, _ = w.Write([]byte("0123456789"))
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	defer srv.Close()
	hc := httpClient(OpenOptions{AllowPrivateEndpoints: true, StallTimeout: 400 * time.Millisecond})
	defer hc.CloseIdleConnections()
	resp, err := hc.Post(srv.URL, "application/octet-stream", strings.NewReader(strings.Repeat("x", 3<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || len(b) != 100 {
		t.Fatalf("slow response: %s, %d bytes, %v", resp.Status, len(b), err)
	}
}

// TestUploadOptionsGCSChunkRetryDeadline: the deadline reaches the GCS
// writer, a caller's own BeforeWrite still runs first, and without a
// deadline the options are left alone.
func TestUploadOptionsGCSChunkRetryDeadline(t *testing.T) {
	w := &storage.Writer{}
	as := func(i any) bool {
		if p, ok := i.(**storage.Writer); ok {
			*p = w
			return true
		}
		return false
	}
	called := false
	wo := UploadOptions(OpenOptions{GCSChunkRetryDeadline: 3 * time.Second}, nil, &blob.WriterOptions{BeforeWrite: func(func(any) bool) error {
		called = true
		return nil
	}})
	if err := wo.BeforeWrite(as); err != nil || !called || w.ChunkRetryDeadline != 3*time.Second {
		t.Errorf("BeforeWrite: err %v, caller's hook ran %v, ChunkRetryDeadline %s", err, called, w.ChunkRetryDeadline)
	}
	if wo := UploadOptions(OpenOptions{}, nil, nil); wo == nil || wo.BeforeWrite != nil {
		t.Errorf("without a deadline: %+v", wo)
	}
}

// TestUploadOptionsConcurrency: the operator's parts in flight reach the
// writer options (the S3 transfer manager's and Azure's concurrency), the
// default when unset, and a caller's own value is kept.
func TestUploadOptionsConcurrency(t *testing.T) {
	for _, c := range []struct {
		set, callers, want int
	}{{0, 0, DefaultUploadConcurrency}, {7, 0, 7}, {7, 3, 3}, {0, 1, 1}} {
		wo := UploadOptions(OpenOptions{UploadConcurrency: c.set}, nil, &blob.WriterOptions{MaxConcurrency: c.callers})
		if wo.MaxConcurrency != c.want {
			t.Errorf("--upload-concurrency %d, caller's %d: MaxConcurrency %d, want %d", c.set, c.callers, wo.MaxConcurrency, c.want)
		}
	}
}

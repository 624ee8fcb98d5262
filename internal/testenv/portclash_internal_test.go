package testenv

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestWaitReadyPortTaken: a server that reports its port taken but keeps
// running (MinIO does) is a clash launch retries on fresh ports, found at
// once, not a hang that waits out readyTimeout and fails the test (seen in
// CI: "minio did not start: not ready after 1m30s … address already in use").
func TestWaitReadyPortTaken(t *testing.T) {
	out := &lockedBuffer{}
	p, err := startProcess("clash", "/bin/sh", []string{"-c",
		"echo 'Error: Unable to listen on 127.0.0.1:1: listen tcp 127.0.0.1:1: bind: address already in use'; sleep 60"}, nil, "", out)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	start := time.Now()
	err = waitReady(p, 20*time.Second, func(context.Context) error { return errors.New("not listening") })
	if !errors.Is(err, errExited) || time.Since(start) > 10*time.Second {
		t.Fatalf("waitReady = %v after %s, want a port clash (errExited) at once", err, time.Since(start))
	}
	if p.exited() {
		t.Fatal("the process exited by itself: the test does not show a server that stays up")
	}
}

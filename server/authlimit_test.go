package server

import (
	"testing"
	"time"
)

// TestAuthLimitsAccounting: per (IP, org) window, the first rows failures
// are recorded and the rest counted; a closed window hands its count to the
// summary or, if not yet summarised, to the next window's first row. The
// per-IP bucket throttles after PerMinute failures only.
func TestAuthLimitsAccounting(t *testing.T) {
	l := (&Interceptors{}).WithAuthFailureLimits(AuthFailureLimits{PerMinute: 3, AuditRows: 2, Window: time.Minute}).authLimits
	t0 := time.Unix(1_000_000, 0)
	recorded, carried := 0, 0
	for i := 0; i < 10; i++ {
		ok, c := l.admit("192.0.2.1", "org_a", t0.Add(time.Duration(i)*time.Second))
		carried += c
		if ok {
			recorded++
		}
	}
	if ok, _ := l.admit("192.0.2.2", "org_a", t0); !ok || recorded != 2 || carried != 0 {
		t.Fatalf("recorded %d carried %d in the first window; another IP recorded %v", recorded, carried, ok)
	}
	// Not summarised yet: the next window's first row carries the 8.
	if ok, c := l.admit("192.0.2.1", "org_a", t0.Add(61*time.Second)); !ok || c != 8 {
		t.Fatalf("first row of the next window: %v carried %d, want 8", ok, c)
	}
	for i := 0; i < 5; i++ {
		l.admit("192.0.2.1", "org_a", t0.Add(62*time.Second))
	}
	if open := l.closed(t0.Add(62*time.Second), false); len(open) != 0 {
		t.Fatalf("open windows summarised: %v", open)
	}
	got := l.closed(t0.Add(200*time.Second), false)
	if w := got[windowKey{"192.0.2.1", "org_a"}]; len(got) != 1 || w.suppressed != 4 {
		t.Fatalf("closed windows %v, want one with 4 suppressed", got)
	}

	for i := 0; i < 3; i++ {
		if l.throttled("192.0.2.9", t0) {
			t.Fatalf("throttled after %d failures", i)
		}
		l.failed("192.0.2.9", t0)
	}
	if !l.throttled("192.0.2.9", t0) || l.throttled("192.0.2.8", t0) {
		t.Fatal("the bucket does not throttle the failing IP alone")
	}
	if l.throttled("192.0.2.9", t0.Add(20*time.Second)) {
		t.Fatal("no token back after 20s at 3 per minute")
	}
}

package integration_test

import (
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/auditexport/auditexport/internal/testenv"
)

// TestReadyz: /readyz is READY while the database answers and 503
// NOT_READY while it does not (PostgreSQL behind a fault proxy that resets
// every connection and refuses new ones), and READY again once it is back;
// /healthz (liveness) stays SERVING throughout, so an orchestrator takes the
// replica out of rotation instead of restarting it.
func TestReadyz(t *testing.T) {
	t.Parallel()
	if !slices.Contains(backends(t), "postgres") {
		s := StartServer(t, "sqlite")
		if code, body, _ := s.REST("GET", "/readyz", "", nil); code != 200 || body["status"] != "READY" {
			t.Fatalf("readyz on SQLite: %d %v", code, body)
		}
		return
	}
	u, err := url.Parse(createPGDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartFaultProxy(t, u.Host)
	u.Host = proxy.Addr
	s := startServerDSN(t, "postgres", u.String(), nil)
	wait := func(want int) map[string]any {
		t.Helper()
		var body map[string]any
		var code int
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if code, body, _ = s.REST("GET", "/readyz", "", nil); code == want {
				return body
			}
		}
		t.Fatalf("readyz: %d %v, want %d", code, body, want)
		return nil
	}
	if body := wait(200); body["status"] != "READY" {
		t.Fatalf("readyz body %v", body)
	}
	proxy.SetMode(testenv.Refuse)
	proxy.Cut()
	if body := wait(503); body["status"] != "NOT_READY" || body["reason"] != "database unreachable" {
		t.Errorf("readyz body while the database is down: %v", body)
	}
	if code, body, _ := s.REST("GET", "/healthz", "", nil); code != 200 || body["status"] != "SERVING" {
		t.Errorf("healthz while the database is down: %d %v", code, body)
	}
	proxy.SetMode(testenv.Pass)
	wait(200)
	if code, _, _ := s.REST("GET", "/v1/users/me", s.AdminKey, nil); code != 200 {
		t.Errorf("GET /v1/users/me after the database returned: %d", code)
	}
}

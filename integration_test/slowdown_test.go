package integration_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// sdThrottle is an S3 front that answers a multipart part upload with 503
// SlowDown (S3's throttling answer) until that part has been refused
// `per` times, and passes everything else to MinIO unchanged (the Host
// header too, which SigV4 signs).
type sdThrottle struct {
	mu      sync.Mutex
	per     int
	refused map[string][]time.Time // part (upload id + number) -> refusals
	proxy   *httputil.ReverseProxy
}

func newSDThrottle(t *testing.T, target string) *sdThrottle {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	th := &sdThrottle{refused: map[string][]time.Time{}}
	th.proxy = &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = r.In.Host
	}}
	return th
}

func (th *sdThrottle) setPer(n int) {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.per = n
}

// stats: parts refused, refusals in all.
func (th *sdThrottle) stats() (parts, refusals int) {
	th.mu.Lock()
	defer th.mu.Unlock()
	for _, r := range th.refused {
		refusals += len(r)
	}
	return len(th.refused), refusals
}

func (th *sdThrottle) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.Method == http.MethodPut && q.Get("partNumber") != "" {
		part := q.Get("uploadId") + "/" + q.Get("partNumber")
		th.mu.Lock()
		refuse := len(th.refused[part]) < th.per
		if refuse {
			th.refused[part] = append(th.refused[part], time.Now())
		}
		th.mu.Unlock()
		if refuse {
			// Read the body, so the connection can be reused.
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`))
			return
		}
	}
	th.proxy.ServeHTTP(w, r)
}

// TestStorageSlowDown: S3 throttles (503 SlowDown) every part upload twice
// before accepting it. The SDK backs off and retries, the run succeeds
// with one complete object and nothing left behind, and progress keeps
// arriving at its cadence meanwhile. Throttled without end, the run still
// cancels at once (CANCELED, its multipart upload aborted).
func TestStorageSlowDown(t *testing.T) {
	t.Parallel()
	heavyTest(t)
	volumeTest(t)
	s := StartServer(t, "sqlite", "--notify-allowed-domains", "example.com")
	e := xfEnv{t, s}
	xfLogsOnFailure(t, s)
	e.seed(sfRows)
	m := testenv.StartMinIO(t)
	th := newSDThrottle(t, m.Endpoint)
	front := httptest.NewServer(th)
	t.Cleanup(front.Close)
	st := sfS3At(t, e, m, front.URL)
	st.rows = sfRows

	th.setPer(2)
	xs := e.sendNow(st.schID)
	end := xs.Terminal(2 * time.Minute)
	run := sfCheckSucceeded(t, e, st, xs, end)
	parts, refusals := th.stats()
	if parts < 2 || refusals != 2*parts {
		t.Errorf("throttled %d parts %d times, want every part (>= 2) refused twice", parts, refusals)
	}
	// Backoff: a refused part is not retried at once.
	th.mu.Lock()
	for part, at := range th.refused {
		if len(at) == 2 && at[1].Sub(at[0]) < time.Millisecond {
			t.Errorf("part %s retried %s after its SlowDown, want a backoff", part, at[1].Sub(at[0]))
		}
	}
	th.mu.Unlock()
	// Progress every 250 ms; a loaded CI machine (the race detector, 12
	// tests at once) stretches that, a stream that stops while the SDK
	// backs off would not.
	msgs := xs.Msgs()
	for i := 1; i < len(msgs); i++ {
		if gap := msgs[i].At - msgs[i-1].At; gap > 3*time.Second {
			t.Errorf("no progress for %s while throttled (after %v)", gap, msgs[i-1].P)
		}
	}
	t.Logf("run %s: %d parts throttled twice each, %d progress messages", run.GetId(), parts, len(msgs))

	// Throttled for good: CancelExportRun still ends the run at once.
	th.setPer(1 << 30)
	_, before := th.stats()
	xs = e.sendNow(st.schID)
	sfWaitFor(t, "a throttled part", 60*time.Second, func() bool { _, n := th.stats(); return n > before })
	canceled := time.Now()
	if err := e.cancelRun(xs.RunID()); err != nil {
		t.Fatalf("CancelExportRun: %v", err)
	}
	end = xs.Terminal(30 * time.Second)
	if took := time.Since(canceled); end.GetPhase() != pb.ExportPhase_EXPORT_PHASE_CANCELED || took > 5*time.Second {
		t.Fatalf("cancel while throttled: %v after %s, want CANCELED within 5 s", end.GetPhase(), took)
	}
	th.setPer(0)
	sfNoLeftovers(t, st, 15*time.Second, st.key(t, e.getRun(xs.RunID()).GetObjectUri()))
}

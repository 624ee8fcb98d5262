package integration_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/auditexport/auditexport/internal/testenv"
)

// TestExportRetriesLostGCSSession: GCS answers 404 to a chunk of a
// resumable upload whose session is gone (sessions expire after a week,
// and a session the store lost is gone at once) while the bucket is
// there. The run starts the upload again with a new session on its next
// attempt and succeeds with one complete object — not FAILED with "the
// bucket does not exist". This is the gcerrors.NotFound side of the
// runner's 404 rule (notFoundCode, then the bucket found accessible);
// TestExportRetriesLostUpload covers S3's NoSuchUpload. Real
// fake-gcs-server behind an HTTP proxy that drops the session: it answers
// the upload's second chunk with GCS's 404 instead of forwarding it.
// Without the rule the run ends FAILED with PROVIDER_BUCKET_NOT_FOUND
// (checked).
func TestExportRetriesLostGCSSession(t *testing.T) {
	t.Parallel()
	heavyTest(t)
	volumeTest(t)
	s := StartServer(t, "sqlite", append([]string{"--notify-allowed-domains", "example.com"}, sfFlags...)...)
	e := xfEnv{t, s}
	xfLogsOnFailure(t, s)
	e.seed(sfRows) // ~20 MB of CSV: three 8 MiB chunks

	g := testenv.StartFakeGCS(t)
	var chunks, dropped atomic.Int32
	target, err := url.Parse(g.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	var proxyURL string
	rp.ModifyResponse = func(r *http.Response) error {
		// The session URI (Location) names the store itself: keep the
		// chunks coming through the proxy.
		if loc := r.Header.Get("Location"); loc != "" {
			r.Header.Set("Location", strings.Replace(loc, g.Endpoint, proxyURL, 1))
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("upload_id") != "" && chunks.Add(1) == 2 {
			_, _ = io.Copy(io.Discard, r.Body)
			dropped.Add(1)
			w.Header().Set("Content-Type", "application/json; charset=UTF-8")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":{"code":404,"message":"No such upload session (dropped by the test)","errors":[{"message":"No such upload session","domain":"global","reason":"notFound"}]}}`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	proxyURL = srv.URL
	st := sfGCSAt(t, e, g, srv.URL)

	xs := e.sendNow(st.schID)
	end := xs.Terminal(120 * time.Second)
	run := sfCheckSucceeded(t, e, st, xs, end)
	if dropped.Load() != 1 {
		t.Fatalf("the proxy dropped %d sessions, want 1 (%d chunk requests): the upload did not go through it", dropped.Load(), chunks.Load())
	}
	if run.GetAttempt() < 2 {
		t.Errorf("attempt %d: the lost session was not started again", run.GetAttempt())
	}
	t.Logf("SUCCEEDED on attempt %d after a lost session; %d chunk requests", run.GetAttempt(), chunks.Load())
}

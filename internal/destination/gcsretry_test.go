package destination_test

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/auditexport/auditexport/internal/destination"
	"github.com/auditexport/auditexport/internal/testenv"
)

// TestGCSSingleRequestUploadGivesUp: an upload small enough to go in one
// request (a manifest, a small export) to a GCS that refuses connections
// fails after 3 tries, as a transient error — the GCS client alone
// retries such a request until its context ends, which kept runs RUNNING
// for good. A resumable upload's chunks keep their own retry deadline.
func TestGCSSingleRequestUploadGivesUp(t *testing.T) {
	t.Parallel()
	g := testenv.StartFakeGCS(t)
	g.CreateBucket(t, "tries")
	u, err := url.Parse(g.Endpoint)
	testenv.Must(t, err)
	p := testenv.StartFaultProxy(t, u.Host)
	u.Host = p.Addr
	in := destination.Integration{Provider: destination.GCS, Destination: "gs://tries/p/", Endpoint: u.String()}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, _, err := destination.Open(ctx, in, destination.OpenOptions{AllowPrivateEndpoints: true})
	testenv.Must(t, err)
	defer b.Close()
	opts := func() *blob.WriterOptions { return &blob.WriterOptions{IfNotExist: true, ContentType: "text/plain"} }
	testenv.Must(t, b.Upload(ctx, "p/before", bytes.NewReader([]byte("stored")), opts()))

	p.SetMode(testenv.Refuse)
	p.Cut()
	start := time.Now()
	uctx, ucancel := context.WithTimeout(ctx, 60*time.Second)
	defer ucancel()
	err = b.Upload(uctx, "p/during", bytes.NewReader([]byte("refused")), opts())
	took := time.Since(start)
	t.Logf("upload while refused: %s, %d connections refused: %v", took.Round(time.Millisecond), p.Refused(), err)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || uctx.Err() != nil {
		t.Fatalf("upload while GCS refuses connections: %v after %s; want it to give up before its context ends", err, took)
	}
	// The last try read the reset, wrote into it ("broken pipe"), or read
	// after its transport closed it: whichever, at the store's address.
	netErr := slices.ContainsFunc([]string{"connection reset", "broken pipe", "closed network connection", "EOF"}, func(w string) bool { return strings.Contains(err.Error(), w) })
	if !strings.Contains(err.Error(), "gave up after 3 tries") || !netErr || !strings.Contains(err.Error(), p.Addr) {
		t.Errorf("error %q does not say it gave up after 3 tries, or lost the network error", err)
	}
	// The error says how many tries were made. The proxy sees 3 new
	// connections, or 2 when the first try took the connection "p/before"
	// left idle in the client's pool: Cut reset it, but the client learns
	// that only when it uses it ("readLoopPeekFailLocked ... connection
	// reset"), and a POST on a reused connection is not retried by net/http.
	if n := p.Refused(); n < 2 || n > 3 {
		t.Errorf("%d connections refused, want 3 tries (2 when the first reused the reset idle connection)", n)
	}
	if _, transient := destination.Describe(b, err); !transient {
		t.Errorf("the error is not transient for the run's own attempts: %v", err)
	}

	p.SetMode(testenv.Pass)
	testenv.Must(t, b.Upload(ctx, "p/after", bytes.NewReader([]byte("stored")), opts()))
}

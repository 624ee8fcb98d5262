package destination

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"cloud.google.com/go/storage"
)

// gcsRequestTries is how many times a GCS request is tried, as for S3 and
// Azure.
const gcsRequestTries = 3

// gcsSingleShotTries bounds the retries of a GCS single-request upload.
//
// An upload that fits in one chunk (a manifest, a small export: under
// the writer's 8 MiB buffer) is sent as one multipart request, and the GCS
// client retries that request — connection refused or reset, 429, 5xx —
// until its context ends: neither the client's retry policy (3 tries,
// client.SetRetry) nor the per-chunk retry deadline of resumable uploads
// applies to it (cloud.google.com/go/storage v1.70 passes only the backoff
// and the retry predicate to the media call). Against an unreachable
// store a run then stayed RUNNING for good (found by
// TestFailedManifestUploadAfterRestart). The client numbers its tries of a
// request in the X-Goog-Api-Client header (gccl-attempt-count/N): when
// try gcsRequestTries fails too, this transport returns gcsGaveUp, which
// the retry predicate gcsShouldRetry does not retry.
type gcsSingleShotTries struct{ base http.RoundTripper }

// gcsGaveUp is the last failure of a single-request upload that was tried
// gcsRequestTries times; it unwraps to that failure (so a network error is
// still a transient one for the run's own attempts).
type gcsGaveUp struct {
	err   error
	tries int
}

func (e *gcsGaveUp) Error() string {
	return fmt.Sprintf("%v (gave up after %d tries)", e.err, e.tries)
}

func (e *gcsGaveUp) Unwrap() error { return e.err }

// gcsShouldRetry is the GCS client's retry predicate, except for an upload
// gcsSingleShotTries gave up on.
func gcsShouldRetry(err error) bool {
	return !errors.As(err, new(*gcsGaveUp)) && storage.ShouldRetry(err)
}

func (t gcsSingleShotTries) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Query().Get("uploadType") != "multipart" {
		return t.base.RoundTrip(req)
	}
	resp, err := t.base.RoundTrip(req)
	if err == nil && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode < 500 {
		return resp, nil
	}
	n := gcsAttempt(req.Header.Get("X-Goog-Api-Client"))
	if n < gcsRequestTries {
		return resp, err
	}
	if err == nil {
		// A 408, 429 or 5xx answer, as the provider put it.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		_ = resp.Body.Close()
		err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil, &gcsGaveUp{err: err, tries: n}
}

// gcsAttempt is the try number in a X-Goog-Api-Client header (0: none).
func gcsAttempt(h string) int {
	for f := range strings.FieldsSeq(h) {
		if v, ok := strings.CutPrefix(f, "gccl-attempt-count/"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

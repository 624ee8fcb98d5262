package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/auditexport/auditexport/internal/clientip"
	"github.com/auditexport/auditexport/server"
)

// clientAddr resolves the caller's address from the socket peer (and, from
// trusted proxies only, X-Forwarded-For) and hands it to the interceptors
// in a header it always overwrites, so a client cannot choose the IP that
// AUDIT_LOGS records or that failed-authentication limits are keyed on.
func clientAddr(next http.Handler, trusted clientip.Trusted) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := trusted.Resolve(r.RemoteAddr, r.Header.Values("X-Forwarded-For"))
		r.Header.Del("X-Forwarded-For")
		r.Header.Set(server.ClientIPHeader, ip)
		next.ServeHTTP(w, r)
	})
}

// readBody reads a REST request's body before the gateway sees it, under a
// deadline, then lifts the deadline. http.Server.ReadTimeout cannot do this:
// it stays armed while the handler runs and, when it fires, cancels the
// request context — cutting SendNow's NDJSON stream. A client that sends
// headers and then trickles the body (slowloris) gets 408 when the deadline
// passes. Other read errors (a body over the size limit) reach the gateway
// unchanged, which answers them as before.
func readBody(next http.Handler, timeout time.Duration) http.Handler {
	if timeout <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(timeout))
		body, err := io.ReadAll(r.Body)
		_ = rc.SetReadDeadline(time.Time{})
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusRequestTimeout)
			_, _ = fmt.Fprintf(w, `{"code":4,"message":"request body not received within %s","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"REQUEST_BODY_TIMEOUT","domain":"auditexport"}]}`, timeout)
			return
		}
		rest := io.Reader(bytes.NewReader(body))
		if err != nil {
			rest = io.MultiReader(rest, errReader{err})
		}
		r.Body = io.NopCloser(rest)
		next.ServeHTTP(w, r)
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

package integration_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestTLSTerminatingProxy runs the setup docs/operations.md describes for a
// TLS-terminating reverse proxy (nginx/Caddy there; the same behaviour in
// Go here: TLS towards clients, plaintext to the server on loopback,
// X-Forwarded-For replaced with the address the proxy saw, no response
// buffering) in front of `serve --trusted-proxies 127.0.0.1/32`:
//   - the client address in AUDIT_LOGS is the one the proxy saw (the client
//     connects from 127.0.0.2), not the proxy's and not the X-Forwarded-For
//     the client forged;
//   - a Send now streams its NDJSON progress through the proxy to its
//     terminal line.
func TestTLSTerminatingProxy(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite", "--trusted-proxies", "127.0.0.1/32", "--notify-allowed-domains", "example.com")
	upstream, err := url.Parse(s.HTTPURL)
	if err != nil {
		t.Fatal(err)
	}
	upTransport := http.DefaultTransport.(*http.Transport).Clone() // the proxy's own: see testenv.HTTP
	t.Cleanup(upTransport.CloseIdleConnections)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			host, _, _ := net.SplitHostPort(pr.In.RemoteAddr)
			pr.Out.Header.Set("X-Forwarded-For", host) // replace, never append
		},
		FlushInterval: -1, // proxy_buffering off
		// A stream cut between the server and the proxy reaches the
		// client only as "unexpected EOF" (the proxy aborts the response
		// without a word): say what the proxy saw.
		Transport: loggedBodies{t, upTransport},
		ErrorLog:  log.New(testWriter{t}, "proxy: ", 0),
	}
	// The request body is read whole before it is forwarded, as nginx does
	// by default (proxy_request_buffering on). Streamed instead, Go's
	// transport reads the inbound body once more after its Content-Length
	// to check it ends there, while Go's server, on the proxy writing the
	// response header, drains and closes that body: the read fails ("invalid
	// Read on closed Body"), the transport tears down the upstream connection
	// and the Send now stream is cut after its first line ("use of closed
	// network connection" in the proxy, "unexpected EOF" in the client):
	// golang/go#40747, a flake of this test in the CI of 2026-12-05.
	proxy := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("proxy reading the request body of %s %s: %v", r.Method, r.URL.Path, err)
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		rp.ServeHTTP(w, r)
	}))
	proxy.StartTLS()
	t.Cleanup(proxy.Close)
	tr := proxy.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 10 * time.Second}).DialContext
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	do := func(method, path, body string, header ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, proxy.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+s.AdminKey)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s through the proxy: %v", method, path, err)
		}
		return resp
	}
	if !strings.HasPrefix(proxy.URL, "https://") {
		t.Fatalf("proxy URL %s", proxy.URL)
	}

	rid := "proxy-" + randHex(4)
	resp := do(http.MethodGet, "/v1/users/me", "", "X-Request-Id", rid, "X-Forwarded-For", "203.0.113.9")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("GET /v1/users/me through the proxy: %d (TLS %v)", resp.StatusCode, resp.TLS != nil)
	}
	if got := auditIP(t, s, rid); got != "127.0.0.2" {
		t.Errorf("AUDIT_LOGS ip_address %q, want the client's 127.0.0.2 as the proxy saw it", got)
	}

	e := xfEnv{t, s}
	dir := s.LocalDir("", "proxy")
	e.must("CreateStorageIntegration", fmt.Sprintf(`{"storageIntegration":{"name":"proxy","provider":"PROVIDER_LOCAL","destination":"file://%s/"}}`, dir))
	schID, _ := e.schedule("proxy", "file://"+dir+"/{run_id}.csv", "COMPRESSION_NONE")
	resp = do(http.MethodPost, "/v1/schedules/"+schID+":sendNow", "{}", "Content-Type", "application/json")
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sendNow through the proxy: %d", resp.StatusCode)
	}
	var phases []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var line struct {
			Result struct {
				Progress struct {
					Phase string `json:"phase"`
				} `json:"progress"`
			} `json:"result"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("NDJSON line %q: %v", sc.Text(), err)
		}
		phases = append(phases, line.Result.Progress.Phase)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the stream through the proxy: %v", err)
	}
	if len(phases) < 2 || phases[0] != "EXPORT_PHASE_QUEUED" || phases[len(phases)-1] != "EXPORT_PHASE_SUCCEEDED" {
		t.Errorf("progress through the proxy: %v", phases)
	}
}

// loggedBodies logs a response body's read error other than EOF (what a
// reverse proxy otherwise swallows when it aborts the response).
type loggedBodies struct {
	t  *testing.T
	rt http.RoundTripper
}

func (l loggedBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(req)
	if err != nil {
		l.t.Logf("proxy -> server %s %s: %v", req.Method, req.URL.Path, err)
		return nil, err
	}
	resp.Body = &loggedBody{ReadCloser: resp.Body, t: l.t, what: req.Method + " " + req.URL.Path}
	return resp, nil
}

type loggedBody struct {
	io.ReadCloser
	t    *testing.T
	what string
	n    int64
}

func (b *loggedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err != nil && err != io.EOF {
		b.t.Logf("proxy reading the server's response to %s after %d bytes: %v", b.what, b.n, err)
	}
	return n, err
}

// testWriter writes into the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

package testenv_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/testenv"
)

// gatewayStub answers like the REST gateway's streams: NDJSON result lines,
// a stream error line, or an error body.
func gatewayStub(t *testing.T) *httptest.Server {
	t.Helper()
	progress := func(phase string, rows int) string {
		return fmt.Sprintf(`{"result":{"progress":{"runId":"run_1","phase":%q,"rowsExported":"%d"}}}`+"\n", phase, rows)
	}
	errInfo := `{"code":%d,"message":"refused","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"OWNER_NOT_AUTHORIZED","domain":"auditexport"}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fl := w.(http.Flusher)
		switch r.URL.Path {
		case "/ok":
			for _, l := range []string{progress("EXPORT_PHASE_QUEUED", 0), "\n", progress("EXPORT_PHASE_UPLOADING", 5), progress("EXPORT_PHASE_SUCCEEDED", 10)} {
				fmt.Fprint(w, l)
				fl.Flush()
			}
		case "/stream-error":
			fmt.Fprint(w, progress("EXPORT_PHASE_QUEUED", 0))
			fmt.Fprintf(w, `{"error":`+errInfo+"}\n", codes.PermissionDenied)
		case "/refused":
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, errInfo, codes.PermissionDenied)
		case "/garbage":
			fmt.Fprint(w, "{\"something\":1}\n")
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRESTStream(t *testing.T) {
	srv := gatewayStub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	rs := testenv.RESTStream(t, ctx, srv.URL, http.MethodPost, "/ok", "key", "{}")
	if id := rs.RunID(); id != "run_1" {
		t.Errorf("RunID %q", id)
	}
	if p := rs.Until("rows", 10*time.Second, func(p *pb.ExportProgress) bool { return p.GetRowsExported() > 0 }); p.GetRowsExported() != 5 {
		t.Errorf("Until: %v", p)
	}
	if p := rs.Terminal(10 * time.Second); p.GetPhase() != pb.ExportPhase_EXPORT_PHASE_SUCCEEDED || p.GetRowsExported() != 10 {
		t.Errorf("Terminal: %v", p)
	}
	msgs, err := rs.Wait()
	if err != nil || len(msgs) != 3 || rs.HTTPStatus != http.StatusOK {
		t.Errorf("Wait: %d messages, %v, status %d", len(msgs), err, rs.HTTPStatus)
	}
	for i := 1; i < len(msgs); i++ {
		if msgs[i].At < msgs[i-1].At {
			t.Errorf("arrival times go backwards: %v", msgs)
		}
	}

	for _, path := range []string{"/stream-error", "/refused"} {
		msgs, err := testenv.RESTStream(t, ctx, srv.URL, http.MethodPost, path, "key", "{}").Wait()
		st := status.Convert(err)
		var reason string
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				reason = info.GetReason()
			}
		}
		if st.Code() != codes.PermissionDenied || reason != "OWNER_NOT_AUTHORIZED" {
			t.Errorf("%s: %d messages, error %v (code %v, reason %q), want PERMISSION_DENIED OWNER_NOT_AUTHORIZED", path, len(msgs), err, st.Code(), reason)
		}
	}

	if _, err := testenv.RESTStream(t, ctx, srv.URL, http.MethodGet, "/garbage", "key", "").Wait(); err == nil || !strings.Contains(err.Error(), "not a result") {
		t.Errorf("a line that is neither result nor error: %v", err)
	}
}

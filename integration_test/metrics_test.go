package integration_test

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/auditexport/auditexport/internal/testenv"
)

// scrapeMetrics GETs /metrics (no credentials: the endpoint is open) and
// returns each sample line's value keyed by "name{labels}" as exposed.
func scrapeMetrics(t *testing.T, s *Server) map[string]float64 {
	t.Helper()
	resp, err := testenv.HTTP.Get(s.HTTPURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetrics: RPCs and a SendNow run show up in the Prometheus exposition
// at GET /metrics on the HTTP listener.
func TestMetrics(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "sqlite")
	tr := grpcTransport{s}
	for range 3 {
		if r := tr.Call(t, "ListStorageIntegrations", s.AdminKey, `{}`, ""); r.Code != codes.OK {
			t.Fatalf("ListStorageIntegrations: %v %s", r.Code, r.Message)
		}
	}
	if r := tr.Call(t, "ListStorageIntegrations", "not-a-key", `{}`, ""); r.Code != codes.Unauthenticated {
		t.Fatalf("bad key: %v %s", r.Code, r.Message)
	}
	_, schID := localSchedule(t, s, "metrics")
	runID := sendNowToEnd(t, s, s.AdminKey, schID)

	m := scrapeMetrics(t, s)
	if v := m[`auditexport_rpc_requests_total{code="OK",method="ListStorageIntegrations"}`]; v < 3 {
		t.Errorf("rpc_requests_total OK ListStorageIntegrations = %v, want >= 3", v)
	}
	if v := m[`auditexport_rpc_requests_total{code="UNAUTHENTICATED",method="ListStorageIntegrations"}`]; v < 1 {
		t.Errorf("rpc_requests_total UNAUTHENTICATED = %v, want >= 1", v)
	}
	if v := m[`auditexport_rpc_duration_seconds_count{method="CreateSchedule"}`]; v < 1 {
		t.Errorf("rpc_duration_seconds_count CreateSchedule = %v, want >= 1", v)
	}
	if v := m[`auditexport_export_runs_total{state="SUCCEEDED",trigger="SEND_NOW"}`]; v < 1 {
		t.Errorf("export_runs_total SUCCEEDED SEND_NOW = %v, want >= 1 (run %s)\n%s", v, runID, s.Logs())
	}
	if v := m["auditexport_export_rows_total"]; v <= 0 {
		t.Errorf("export_rows_total = %v, want > 0", v)
	}
	if v := m["auditexport_export_bytes_total"]; v <= 0 {
		t.Errorf("export_bytes_total = %v, want > 0", v)
	}
	if v := m["auditexport_export_upload_duration_seconds_count"]; v < 1 {
		t.Errorf("export_upload_duration_seconds_count = %v, want >= 1", v)
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("Go runtime collector missing")
	}
}

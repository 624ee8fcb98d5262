package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestGatherFamilies(t *testing.T) {
	m := New()
	m.ObserveRPC("ListSchedules", "OK", 5*time.Millisecond)
	m.RunFinished("SUCCEEDED", "SEND_NOW", 10, 200, time.Second)
	m.RunFinished("FAILED", "SCHEDULED", 3, 0, time.Second)
	m.ObserveLateness(2 * time.Second)
	m.SetQueueDepth(4)
	m.SetRunning(1)

	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{
		"auditexport_rpc_requests_total", "auditexport_rpc_duration_seconds",
		"auditexport_export_runs_total", "auditexport_export_rows_total", "auditexport_export_bytes_total",
		"auditexport_export_upload_duration_seconds", "auditexport_schedule_lateness_seconds",
		"auditexport_export_queue_depth", "auditexport_export_runs_running",
		"go_goroutines",
	} {
		if !got[name] {
			t.Errorf("family %s not gathered", name)
		}
	}

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`auditexport_rpc_requests_total{code="OK",method="ListSchedules"} 1`,
		`auditexport_export_runs_total{state="SUCCEEDED",trigger="SEND_NOW"} 1`,
		`auditexport_export_runs_total{state="FAILED",trigger="SCHEDULED"} 1`,
		"auditexport_export_rows_total 10", // failed runs add nothing
		"auditexport_export_bytes_total 200",
		"auditexport_export_queue_depth 4",
		"auditexport_export_runs_running 1",
		"auditexport_schedule_lateness_seconds_count 1",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}

func TestNilMetricsIsSafe(t *testing.T) {
	var m *Metrics
	m.ObserveRPC("X", "OK", time.Second)
	m.RunFinished("SUCCEEDED", "SEND_NOW", 1, 1, time.Second)
	m.ObserveLateness(time.Second)
	m.SetQueueDepth(1)
	m.SetRunning(1)
	if m.Registry() != nil {
		t.Fatal("nil Metrics has a registry")
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 404 {
		t.Fatalf("nil handler: %d", rec.Code)
	}
}

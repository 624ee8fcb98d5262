// Package metrics holds the server's Prometheus collectors. Every method is
// safe on a nil *Metrics (it does nothing), so components built without
// metrics (tests, tools) need no special casing.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "auditexport"

// Metrics owns a private registry (never the global default one) and the
// collectors registered in it.
type Metrics struct {
	reg *prometheus.Registry

	rpcRequests    *prometheus.CounterVec
	rpcDuration    *prometheus.HistogramVec
	runs           *prometheus.CounterVec
	rows           prometheus.Counter
	bytes          prometheus.Counter
	uploadDuration prometheus.Histogram
	lateness       prometheus.Histogram
	queueDepth     prometheus.Gauge
	running        prometheus.Gauge
}

// New builds the collectors, with the Go runtime and process collectors, in
// a fresh registry.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		rpcRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "rpc_requests_total",
			Help: "RPCs handled (gRPC and REST through the gateway), by method and status code.",
		}, []string{"method", "code"}),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "rpc_duration_seconds",
			Help:    "RPC handling time, by method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "export_runs_total",
			Help: "Finished export runs, by terminal state and trigger.",
		}, []string{"state", "trigger"}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "export_rows_total",
			Help: "Rows exported by succeeded runs.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "export_bytes_total",
			Help: "Bytes uploaded by succeeded runs.",
		}),
		uploadDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "export_upload_duration_seconds",
			Help:    "Wall time of succeeded runs, from execution start to finish.",
			Buckets: []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "schedule_lateness_seconds",
			Help:    "Delay of scheduled runs: execution start minus the end of the run's period.",
			Buckets: []float64{0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "export_queue_depth",
			Help: "Export runs in state QUEUED (all organizations), sampled by the scheduler each tick.",
		}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "export_runs_running",
			Help: "Export runs this process's scheduler is executing, sampled each tick.",
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.rpcRequests, m.rpcDuration, m.runs, m.rows, m.bytes,
		m.uploadDuration, m.lateness, m.queueDepth, m.running,
	)
	return m
}

// Registry returns the private registry (nil for a nil *Metrics).
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the registry in the Prometheus exposition format. A nil
// *Metrics serves 404.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ObserveRPC counts one RPC and records its duration.
func (m *Metrics) ObserveRPC(method, code string, d time.Duration) {
	if m == nil {
		return
	}
	m.rpcRequests.WithLabelValues(method, code).Inc()
	m.rpcDuration.WithLabelValues(method).Observe(d.Seconds())
}

// RunFinished counts a run that reached a terminal state; a SUCCEEDED run
// also adds its rows, bytes and wall time.
func (m *Metrics) RunFinished(state, trigger string, rows, bytes int64, d time.Duration) {
	if m == nil {
		return
	}
	if trigger == "" {
		trigger = "UNKNOWN"
	}
	m.runs.WithLabelValues(state, trigger).Inc()
	if state != "SUCCEEDED" {
		return
	}
	if rows > 0 {
		m.rows.Add(float64(rows))
	}
	if bytes > 0 {
		m.bytes.Add(float64(bytes))
	}
	if d < 0 {
		d = 0
	}
	m.uploadDuration.Observe(d.Seconds())
}

// ObserveLateness records how late a scheduled run started after its
// period ended.
func (m *Metrics) ObserveLateness(d time.Duration) {
	if m == nil {
		return
	}
	if d < 0 {
		d = 0
	}
	m.lateness.Observe(d.Seconds())
}

// SetQueueDepth sets the number of QUEUED runs.
func (m *Metrics) SetQueueDepth(n int) {
	if m == nil {
		return
	}
	m.queueDepth.Set(float64(n))
}

// SetRunning sets the number of runs being executed.
func (m *Metrics) SetRunning(n int) {
	if m == nil {
		return
	}
	m.running.Set(float64(n))
}

// ScheduleHealth is one schedule's sample of the last-success gauge.
type ScheduleHealth struct {
	OrgID, ScheduleID, State string
	// LastSuccess is when a run last SUCCEEDED (or was SKIPPED by its send
	// condition); the schedule's creation time if none has.
	LastSuccess time.Time
}

// WatchSchedules exports auditexport_schedule_last_success_timestamp_seconds,
// read through load at every scrape: it comes from the database, so it is
// the same on every replica and survives restarts, and deleted schedules
// simply disappear. An alert on time() minus it catches silence.
func (m *Metrics) WatchSchedules(load func(context.Context) ([]ScheduleHealth, error)) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&scheduleCollector{load: load, desc: prometheus.NewDesc(namespace+"_schedule_last_success_timestamp_seconds",
		"Unix time of the schedule's last SUCCEEDED (or SKIPPED) run, or of its creation if it has none; by organization, schedule and state.",
		[]string{"org_id", "schedule_id", "state"}, nil)})
}

type scheduleCollector struct {
	desc *prometheus.Desc
	load func(context.Context) ([]ScheduleHealth, error)
}

func (c *scheduleCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *scheduleCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := c.load(ctx)
	if err != nil {
		// A scrape error, not a silently missing series.
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, r := range rows {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(r.LastSuccess.Unix()), r.OrgID, r.ScheduleID, r.State)
	}
}

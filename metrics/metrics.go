// Package metrics holds pgwarden's Prometheus collectors, on a registry of
// its own so that nothing else registers into what /metrics shows.
package metrics

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the collectors both frontends report to.
type Metrics struct {
	reg          *prometheus.Registry
	authAttempts *prometheus.CounterVec
	authDuration prometheus.Histogram
	connections  *prometheus.GaugeVec
	relayed      *prometheus.CounterVec
	reloads      *prometheus.CounterVec
}

// New registers every collector of SPEC section 7.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		authAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgwarden_auth_attempts_total", Help: "Authentication attempts by protocol, method and result.",
		}, []string{"protocol", "method", "result"}),
		authDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pgwarden_auth_duration_seconds", Help: "Time to decide an authentication attempt, throttle delay included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pgwarden_client_connections", Help: "Open client connections (HTTP: requests in flight).",
		}, []string{"protocol"}),
		relayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgwarden_relayed_bytes_total", Help: "Bytes relayed between clients and backends, counted when a session ends.",
		}, []string{"direction"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgwarden_reloads_total", Help: "Configuration reloads by result.",
		}, []string{"result"}),
	}
	m.reg.MustRegister(m.authAttempts, m.authDuration, m.connections, m.relayed, m.reloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, p := range []string{"pg", "http"} {
		m.connections.WithLabelValues(p)
	}
	for _, r := range []string{"ok", "failed"} {
		m.reloads.WithLabelValues(r)
	}
	return m
}

// AuthAttempt counts one attempt and how long it took to decide.
func (m *Metrics) AuthAttempt(protocol, method, result string, took time.Duration) {
	if m == nil {
		return
	}
	if method == "" {
		method = "none"
	}
	m.authAttempts.WithLabelValues(protocol, method, result).Inc()
	m.authDuration.Observe(took.Seconds())
}

// ConnectionOpened and ConnectionClosed track open client connections.
func (m *Metrics) ConnectionOpened(protocol string) {
	if m != nil {
		m.connections.WithLabelValues(protocol).Inc()
	}
}

// ConnectionClosed is the counterpart of ConnectionOpened.
func (m *Metrics) ConnectionClosed(protocol string) {
	if m != nil {
		m.connections.WithLabelValues(protocol).Dec()
	}
}

// Relayed adds the bytes of a finished session.
func (m *Metrics) Relayed(clientToBackend, backendToClient int64) {
	if m != nil {
		m.relayed.WithLabelValues("client_to_backend").Add(float64(clientToBackend))
		m.relayed.WithLabelValues("backend_to_client").Add(float64(backendToClient))
	}
}

// Reload counts a reload by result ("ok" or "failed").
func (m *Metrics) Reload(result string) {
	if m != nil {
		m.reloads.WithLabelValues(result).Inc()
	}
}

// Register adds more collectors (the backend pools').
func (m *Metrics) Register(c prometheus.Collector) { m.reg.MustRegister(c) }

// Handler serves the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// PoolFigures are the backend pool's numbers at one moment.
type PoolFigures struct {
	Parked, InUse  int
	Reused, Closed int64
}

// RegisterPool exposes the backend pool: parked and in-use backends, and
// how many were reused and closed.
func (m *Metrics) RegisterPool(figures func() PoolFigures) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgwarden_backend_parked", Help: "Idle backends kept for reuse."},
			func() float64 { return float64(figures().Parked) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgwarden_backend_in_use", Help: "Backends serving a client."},
			func() float64 { return float64(figures().InUse) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pgwarden_backend_reused_total", Help: "Client sessions served by a reused backend."},
			func() float64 { return float64(figures().Reused) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pgwarden_backend_closed_total", Help: "Backends closed by pgwarden (idle, lifetime, limits, errors)."},
			func() float64 { return float64(figures().Closed) }),
	)
}

// RegisterConsoleSessions exposes the number of web console sessions.
func (m *Metrics) RegisterConsoleSessions(n func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgwarden_console_sessions", Help: "Web console sessions stored (expired ones until swept)."},
		func() float64 { return float64(n()) }))
}

// Sample is one pgwarden_* series as the admin console shows it.
type Sample struct {
	Name   string
	Labels string
	Value  float64
}

// Samples returns the current value of every pgwarden_* counter and gauge
// (histograms as their count and sum).
func (m *Metrics) Samples() []Sample {
	families, err := m.reg.Gather()
	if err != nil {
		return nil
	}
	var out []Sample
	for _, f := range families {
		name := f.GetName()
		if !strings.HasPrefix(name, "pgwarden_") {
			continue
		}
		for _, mt := range f.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			ls := strings.Join(labels, ",")
			switch {
			case mt.Counter != nil:
				out = append(out, Sample{name, ls, mt.Counter.GetValue()})
			case mt.Gauge != nil:
				out = append(out, Sample{name, ls, mt.Gauge.GetValue()})
			case mt.Histogram != nil:
				out = append(out, Sample{name + "_count", ls, float64(mt.Histogram.GetSampleCount())},
					Sample{name + "_sum", ls, mt.Histogram.GetSampleSum()})
			}
		}
	}
	return out
}

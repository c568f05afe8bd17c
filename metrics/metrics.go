// Package metrics holds pgwarden's Prometheus collectors, on a registry of
// its own so that nothing else registers into what /metrics shows.
package metrics

import (
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the collectors both frontends report to.
type Metrics struct {
	reg             *prometheus.Registry
	registerer      prometheus.Registerer
	authAttempts    *prometheus.CounterVec
	authDuration    *prometheus.HistogramVec
	connections     *prometheus.GaugeVec
	relayed         *prometheus.CounterVec
	relayedUp       prometheus.Counter
	relayedDown     prometheus.Counter
	reloads         *prometheus.CounterVec
	httpDuration    *prometheus.HistogramVec
	backendConnect  *prometheus.HistogramVec
	backendAcquire  *prometheus.HistogramVec
	storeUp         prometheus.Gauge
	storeRegistered atomic.Bool
	// collectors are every collector registered, for Names.
	collectors []prometheus.Collector
}

// latencyBuckets span 0.1 ms to about 13 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 18)

// New registers every collector of SPEC section 7, for an instance without
// a peer id.
func New() *Metrics { return NewFor("", 0) }

// NewFor is New for an instance of a version and peer id: with a peer id,
// every metric carries it as the label peer_id, so the series of several
// instances stay apart wherever they are collected; pgwarden_build_info
// says which build runs.
func NewFor(version string, peerID int) *Metrics {
	reg := prometheus.NewRegistry()
	var registerer prometheus.Registerer = reg
	if peerID != 0 {
		registerer = prometheus.WrapRegistererWith(prometheus.Labels{"peer_id": strconv.Itoa(peerID)}, reg)
	}
	m := &Metrics{
		reg:        reg,
		registerer: registerer,
		authAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgwarden_auth_attempts_total", Help: "Authentication attempts by protocol, method and result.",
		}, []string{"protocol", "method", "result"}),
		authDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pgwarden_auth_duration_seconds", Help: "Time to decide an authentication attempt, throttle delay included, by protocol, method and result.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}, []string{"protocol", "method", "result"}),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pgwarden_client_connections", Help: "Open client connections (HTTP: requests in flight).",
		}, []string{"protocol"}),
		relayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgwarden_relayed_bytes_total", Help: "Bytes relayed between clients and backends, counted as they flow.",
		}, []string{"direction"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pgwarden_http_request_duration_seconds", Help: "HTTP requests by route (the router's pattern, \"other\" when none matched) and status.",
			Buckets: latencyBuckets,
		}, []string{"route", "status"}),
		backendConnect: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pgwarden_backend_connect_duration_seconds", Help: "Time to open a new backend session (dial, TLS, login), by protocol of the client it is for.",
			Buckets: latencyBuckets,
		}, []string{"protocol"}),
		backendAcquire: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pgwarden_backend_acquire_duration_seconds", Help: "Time a client session or HTTP request waited for a backend: a parked one checked out, a pooled one, or a new one opened.",
			Buckets: latencyBuckets,
		}, []string{"protocol"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgwarden_reloads_total", Help: "Configuration reloads by result.",
		}, []string{"result"}),
	}
	m.storeUp = prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgwarden_store_up",
		Help: "1 while the PostgreSQL user store's LISTEN connection is up and its users loaded; 0 while logins are refused for want of it (absent with the file store)."})
	m.register(m.authAttempts, m.authDuration, m.connections, m.relayed, m.reloads, m.httpDuration, m.backendConnect, m.backendAcquire,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgwarden_build_info", Help: "The running build: always 1, with its version and Go version."},
		[]string{"version", "goversion"})
	info.WithLabelValues(version, runtime.Version()).Set(1)
	m.register(info)
	m.relayedUp = m.relayed.WithLabelValues("client_to_backend")
	m.relayedDown = m.relayed.WithLabelValues("backend_to_client")
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
	m.authDuration.WithLabelValues(protocol, method, result).Observe(took.Seconds())
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

// RelayedUp and RelayedDown add bytes relayed client to backend and back,
// as each chunk is passed on.
func (m *Metrics) RelayedUp(n int) {
	if m != nil {
		m.relayedUp.Add(float64(n))
	}
}

// RelayedDown is RelayedUp's other direction.
func (m *Metrics) RelayedDown(n int) {
	if m != nil {
		m.relayedDown.Add(float64(n))
	}
}

// HTTPRequest observes one answered HTTP request.
func (m *Metrics) HTTPRequest(route string, status int, took time.Duration) {
	if m != nil {
		m.httpDuration.WithLabelValues(route, strconv.Itoa(status)).Observe(took.Seconds())
	}
}

// BackendConnect observes the opening of a new backend session.
func (m *Metrics) BackendConnect(protocol string, took time.Duration) {
	if m != nil {
		m.backendConnect.WithLabelValues(protocol).Observe(took.Seconds())
	}
}

// BackendAcquire observes how long a client or request waited for a
// backend.
func (m *Metrics) BackendAcquire(protocol string, took time.Duration) {
	if m != nil {
		m.backendAcquire.WithLabelValues(protocol).Observe(took.Seconds())
	}
}

// StoreUp says whether the PostgreSQL user store can be trusted now; the
// gauge appears once a postgres store is in use.
func (m *Metrics) StoreUp(up bool) {
	if m == nil {
		return
	}
	if !m.storeRegistered.Swap(true) {
		m.register(m.storeUp)
	}
	v := 0.0
	if up {
		v = 1
	}
	m.storeUp.Set(v)
}

// register registers collectors and remembers them for Names.
func (m *Metrics) register(cs ...prometheus.Collector) {
	m.registerer.MustRegister(cs...)
	m.collectors = append(m.collectors, cs...)
}

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

// Names lists the name of every metric pgwarden can export, whether or not
// it has a sample yet (a histogram with labels appears on /metrics only
// once observed); for checking dashboards and alerts against.
func (m *Metrics) Names() []string {
	ch := make(chan *prometheus.Desc, 256)
	go func() {
		for _, c := range m.collectors {
			c.Describe(ch)
		}
		close(ch)
	}()
	var out []string
	for d := range ch {
		if sub := fqNameRE.FindStringSubmatch(d.String()); sub != nil {
			out = append(out, sub[1])
		}
	}
	return out
}

// Reload counts a reload by result ("ok" or "failed").
func (m *Metrics) Reload(result string) {
	if m != nil {
		m.reloads.WithLabelValues(result).Inc()
	}
}

// Register adds more collectors (the backend pools').
func (m *Metrics) Register(c prometheus.Collector) { m.register(c) }

// Handler serves the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// PoolFigures are the backend pool's numbers at one moment.
type PoolFigures struct {
	Parked, InUse, Waiting int
	// Ending are the backends of InUse whose client left while
	// PostgreSQL still runs its last statement.
	Ending         int
	Reused, Closed int64
}

// RegisterPool exposes the backend pool: parked and in-use backends, the
// clients waiting for one, and how many were reused and closed.
func (m *Metrics) RegisterPool(figures func() PoolFigures) {
	m.register(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgwarden_backend_parked", Help: "Idle backends kept for reuse."},
			func() float64 { return float64(figures().Parked) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgwarden_backend_in_use", Help: "Backends serving a client."},
			func() float64 { return float64(figures().InUse) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgwarden_backend_ending", Help: "Backends whose client left while they still owe answers, which pgwarden waits for (counted in pgwarden_backend_in_use until then)."},
			func() float64 { return float64(figures().Ending) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgwarden_backend_waiting", Help: "Client logins and HTTP connections waiting at max_backend_connections for a backend to be released."},
			func() float64 { return float64(figures().Waiting) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pgwarden_backend_reused_total", Help: "Client sessions served by a reused backend."},
			func() float64 { return float64(figures().Reused) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pgwarden_backend_closed_total", Help: "Backends closed by pgwarden (idle, lifetime, limits, errors)."},
			func() float64 { return float64(figures().Closed) }),
	)
}

// RegisterConsoleSessions exposes the number of web console sessions.
func (m *Metrics) RegisterConsoleSessions(n func() int) {
	m.register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgwarden_console_sessions", Help: "Web console sessions stored (expired ones until swept)."},
		func() float64 { return float64(n()) }))
}

// RegisterRequestMemory exposes what the answers of HTTP requests in
// progress hold of http.max_request_memory, and that bound.
func (m *Metrics) RegisterRequestMemory(used, capacity func() int64) {
	m.register(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgwarden_http_request_memory_bytes", Help: "Bytes the answers of HTTP requests in progress hold (their JSON and large backend messages)."},
			func() float64 { return float64(used()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgwarden_http_request_memory_limit_bytes", Help: "http.max_request_memory in force."},
			func() float64 { return float64(capacity()) }),
	)
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

package httpfront

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/pgwarden/pgwarden/metrics"
)

// BenchmarkLimit is the cost limit adds to every request: the count
// against max_connections and the record of a client still
// authenticating (see admission.Pending).
func BenchmarkLimit(b *testing.B) {
	tc := newTestConsole(b)
	tc.s.o.Active = new(atomic.Int64)
	tc.s.o.Metrics = metrics.New()
	h := tc.s.limit(func(w http.ResponseWriter, r *http.Request) { tc.s.authenticated(r) })
	req := httptest.NewRequest("POST", "/_sql", nil)
	req.RemoteAddr = "192.0.2.1:5000"
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h(w, req)
	}
}

// BenchmarkLimitCountOnly is what limit cost before it recorded clients
// still authenticating: the count and the metric alone.
func BenchmarkLimitCountOnly(b *testing.B) {
	tc := newTestConsole(b)
	active := new(atomic.Int64)
	m := metrics.New()
	h := func(w http.ResponseWriter, r *http.Request) {}
	req := httptest.NewRequest("POST", "/_sql", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		tc.s.o.Keeper.Touch()
		max := int64(tc.s.o.State.Current().Config.Server.MaxConnections)
		n := active.Add(1)
		m.ConnectionOpened("http")
		if n <= max {
			h(w, req)
		}
		m.ConnectionClosed("http")
		active.Add(-1)
	}
}

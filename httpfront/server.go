// Package httpfront is pgwarden's HTTP frontend: SQL as JSON at /_sql,
// tokens at /_token, health, metrics and the web console. It takes
// credentials from a request, asks package hba which method applies, proves
// them through authcore and runs the SQL on a backend pool as the mapped
// role.
package httpfront

import (
	"context"
	"crypto/tls"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/hba"
	"github.com/pgwarden/pgwarden/internal/admission"
	"github.com/pgwarden/pgwarden/internal/awake"
	"github.com/pgwarden/pgwarden/internal/listen"
	"github.com/pgwarden/pgwarden/internal/logpace"
	"github.com/pgwarden/pgwarden/internal/membudget"
	"github.com/pgwarden/pgwarden/metrics"
	"github.com/pgwarden/pgwarden/snapshot"
)

// Options are what the server is built from.
type Options struct {
	State    *snapshot.Holder
	Log      *zap.Logger
	Audit    *zap.Logger
	Throttle *authcore.Throttle
	Metrics  *metrics.Metrics
	// Active counts client connections of both protocols against
	// server.max_connections; HTTP counts requests in flight.
	Active *atomic.Int64
	// Pending records the clients of both protocols still authenticating,
	// by source (see admission.Pending; nil: this server's own).
	Pending *admission.Pending
	// EndWireSessions closes a user's Postgres wire sessions, after a
	// password change in the console; nil when there is no wire frontend.
	EndWireSessions func(user string)
	// ReleaseDatabases closes the idle backends, of both frontends, of the
	// databases a request's DROP, ALTER or CREATE DATABASE names (nil:
	// this server's own pooled connections only, Server.ReleaseDatabases).
	ReleaseDatabases func(host string, port int, names []string)
	// BackendBudget, when set, is the wire's backend pool: the HTTP pools'
	// connections count against its max_backend_connections too.
	BackendBudget *backend.Pool
	// Sessions, FormKey and SetupToken are shared by every instance when
	// the users live in the PostgreSQL store; empty, each is the
	// process's own (in memory, random).
	Sessions   SessionStore
	FormKey    []byte
	SetupToken string
	// SetupSpent, when set, is called once the setup token is spent, to
	// forget a shared one: a token that outlived its first admin would
	// open setup again whenever the users held no admin.
	SetupSpent func()
	// Keeper is touched by every request (nil: none).
	Keeper *awake.Keeper
}

// Server serves the HTTP listeners of server.http_listen.
type Server struct {
	o     Options
	pools *backend.HTTPPools
	gate  *authcore.Gate
	// draining is set once a SIGTERM drain begins: /readyz answers 503.
	draining atomic.Bool
	// openConns counts the open connections of the HTTP listeners, idle
	// keep-alive ones included (see trackConn); idleSweep is when idle
	// ones were last closed to make room.
	openConns atomic.Int64
	idleSweep atomic.Int64
	// ready is /readyz's last look at the backend (see backendReady).
	ready struct {
		mu  sync.Mutex
		at  time.Time
		err error
	}
	// metricsSrv serves server.metrics_listen; it outlives the drain.
	metricsLn  net.Listener
	metricsSrv *http.Server
	servers    []*http.Server
	listeners  []net.Listener
	drainable  []*listen.Listener
	wg         sync.WaitGroup
	nextID     atomic.Uint64
	ctx        context.Context
	cancel     context.CancelFunc
	// pending: the clients still authenticating (Options.Pending);
	// evictions paces the log line about making room.
	pending   *admission.Pending
	evictions logpace.Count
	// memoryRefusals paces the log line about requests refused for want
	// of room in http.max_request_memory.
	memoryRefusals logpace.Count
	// bodies is the part of http.max_request_memory that bodies not yet
	// proved by their credentials may take (a quarter).
	bodies *membudget.Budget
	// newConns are the HTTP connections whose first request has not
	// been read yet, by peer (newConnsOf maps each to its record): past
	// twice max_connections open connections, one source's cannot fill
	// every slot (see trackConn).
	newConns   *admission.Pending
	newConnsOf sync.Map

	// sessions are the console's logins, kept across reloads.
	sessions SessionStore
	// formKey signs the CSRF tokens of the forms shown before login.
	formKey []byte
	// setup is the first-run token, nil when an admin existed at start.
	setup *SetupToken
}

// New makes the server; call Listen, then Serve.
func New(o Options) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{o: o, ctx: ctx, cancel: cancel, sessions: o.Sessions, formKey: o.FormKey, pending: o.Pending}
	if s.pending == nil {
		s.pending = admission.New()
	}
	s.newConns = admission.New()
	if s.sessions == nil {
		s.sessions = NewSessions(maxSessions, maxSessionsPerUser)
	}
	if len(s.formKey) == 0 {
		s.formKey = []byte(NewOpaqueID())
	}
	s.pools = backend.NewHTTPPools(o.Log)
	s.pools.ConfigureTypes = sendArraysAsText
	s.pools.Memory = membudget.New(o.State.Current().Config.HTTP.RequestMemory())
	s.bodies = membudget.New(o.State.Current().Config.HTTP.RequestMemory() / 4)
	s.pools.Timings = backend.PoolTimings{
		Connect: func(d time.Duration) { o.Metrics.BackendConnect("http", d) },
		Acquire: func(d time.Duration) { o.Metrics.BackendAcquire("http", d) },
	}
	if s.o.ReleaseDatabases == nil {
		s.o.ReleaseDatabases = s.ReleaseDatabases
	}
	if o.BackendBudget != nil {
		s.pools.CountAgainst(o.BackendBudget, func() backend.PoolLimits { return backend.LimitsOf(s.o.State.Current().Config) })
	}
	s.gate = &authcore.Gate{Throttle: o.Throttle}
	if o.Metrics != nil {
		o.Metrics.RegisterConsoleSessions(s.sessions.Len)
		o.Metrics.RegisterRequestMemory(s.pools.Memory.Used, func() int64 { return s.o.State.Current().Config.HTTP.RequestMemory() })
	}
	return s
}

// ReleaseDatabases closes the pooled connections of the named databases on
// host:port (see backend.HTTPPools.ReleaseDatabases).
func (s *Server) ReleaseDatabases(host string, port int, names []string) {
	s.pools.ReleaseDatabases(host, port, names)
}

// OpenAPI is the OpenAPI 3.1 document of the HTTP API (httpfront/openapi.json),
// served at GET /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Handler is the request router.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /_sql", s.limit(s.handleSQL))
	mux.HandleFunc("POST /_token", s.limit(s.handleToken))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(OpenAPI)
	})
	mux.HandleFunc("GET /.well-known/oauth-protected-resource", s.handleResourceMetadata)
	if s.o.State.Current().Config.Server.MetricsListen == "" {
		mux.Handle("GET /metrics", s.o.Metrics.Handler())
	}
	mux.HandleFunc("GET /{$}", s.console(s.handleConsole))
	mux.HandleFunc("POST /login", s.console(s.handleLogin))
	mux.HandleFunc("POST /logout", s.console(s.handleLogout))
	mux.HandleFunc("POST /password", s.console(s.handlePassword))
	mux.HandleFunc("GET /setup", s.console(s.handleSetupPage))
	mux.HandleFunc("POST /setup", s.console(s.handleSetup))
	mux.Handle("GET /assets/", s.console(func(w http.ResponseWriter, r *http.Request, _ *snapshot.Snapshot, _ transport) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		assets.ServeHTTP(w, r)
	}))
	return s.timed(s.checkHost(mux))
}

// timed observes each request's duration by the route the router matched
// (its pattern, so the label set stays small) and the status answered.
func (s *Server) timed(next http.Handler) http.Handler {
	if s.o.Metrics == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "other"
		}
		s.o.Metrics.HTTPRequest(route, sw.status, time.Since(start))
	})
}

// statusWriter remembers the status a handler answered. Unwrap lets
// http.ResponseController reach the connection's Flush.
type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Listen opens the listeners of server.http_listen.
func (s *Server) Listen() error {
	snap := s.o.State.Current()
	for _, addr := range snap.Config.Server.HTTPListen {
		dl, err := listen.TCP(addr, snap.Config.Server.ReusePort)
		if err != nil {
			for _, l := range s.listeners {
				l.Close()
			}
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		s.drainable = append(s.drainable, dl)
		var ln net.Listener = dl
		if snap.Config.Server.HTTPTLS {
			// The certificate comes from the snapshot current at each
			// ClientHello: a reload with rotated files takes effect for
			// new connections at once.
			ln = tls.NewListener(ln, &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				m := s.o.State.Current().TLS
				if m == nil {
					return nil, errors.New("no [tls] in the configuration")
				}
				return m.HTTPConfig(), nil
			}})
		}
		s.listeners = append(s.listeners, ln)
	}
	return nil
}

// ListenMetrics opens server.metrics_listen, when set: /metrics, /healthz
// and /readyz on an address of their own, for a scraper and a load
// balancer's health check that the SQL listener need not serve. It stays
// open through a drain, so /readyz can say 503 until the process ends.
func (s *Server) ListenMetrics() error {
	addr := s.o.State.Current().Config.Server.MetricsListen
	if addr == "" {
		return nil
	}
	ln, err := listen.TCP(addr, s.o.State.Current().Config.Server.ReusePort)
	if err != nil {
		return fmt.Errorf("listen on %s (server.metrics_listen): %w", addr, err)
	}
	s.metricsLn = ln
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.o.Metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	s.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second,
		ErrorLog: zap.NewStdLog(s.o.Log.Named("metrics"))}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.metricsSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.o.Log.Error("metrics server stopped", zap.Error(err))
		}
	}()
	return nil
}

// MetricsAddr is the metrics listener's address, nil when there is none.
func (s *Server) MetricsAddr() net.Addr {
	if s.metricsLn == nil {
		return nil
	}
	return s.metricsLn.Addr()
}

// Addrs returns the listening addresses.
func (s *Server) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.Addr()
	}
	return out
}

// Serve starts serving every listener and returns at once.
func (s *Server) Serve() {
	s.startSetup()
	h := s.Handler()
	for range s.listeners {
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       60 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          zap.NewStdLog(s.o.Log.Named("http")),
			BaseContext:       func(net.Listener) context.Context { return s.ctx },
			ConnState:         s.trackConn,
		}
		s.servers = append(s.servers, srv)
	}
	// Every server exists before any serves: trackConn reads the list.
	for i, ln := range s.listeners {
		srv := s.servers[i]
		s.wg.Add(1)
		go func(ln net.Listener) {
			defer s.wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				s.o.Log.Error("http server stopped", zap.Error(err))
			}
		}(ln)
	}
	s.pools.Start(func() time.Duration { return s.o.State.Current().Config.Backend.IdleTimeout.Duration })
	s.wg.Add(1)
	go s.sweepSessions()
}

// sweepSessions removes expired and ended console sessions every minute
// until the server closes, so that they free their memory even if their
// cookies never come back.
func (s *Server) sweepSessions() {
	defer s.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			snap := s.o.State.Current()
			s.sessions.Sweep(sessionLimits(snap), now, func(x Session) bool {
				return x.HeldBy(snap.Users.Lookup(x.User), now)
			})
		}
	}
}

// Shutdown stops accepting and waits for requests in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) {
	// /readyz answers 503 from now on, where it is still served (the
	// metrics listener stays open until the process ends).
	s.draining.Store(true)
	// Connections already queued in the backlogs are served, not reset.
	for _, d := range s.drainable {
		d.Drain()
	}
	for _, srv := range s.servers {
		srv.Shutdown(ctx)
	}
}

// Close stops everything at once.
func (s *Server) Close() {
	s.cancel()
	for _, srv := range s.servers {
		srv.Close()
	}
	if s.metricsSrv != nil {
		s.metricsSrv.Close()
	}
	s.wg.Wait()
	s.pools.Close()
}

// limit counts a request against server.max_connections, and records it
// as a client still authenticating until it has (see admission.Pending):
// at the bound, a request of another source takes the place of the
// oldest waiting client (a request, or a wire connection) of the source
// that holds the most. Before December 2026 one address that kept
// max_connections requests sending their bodies slowly, with no
// credentials at all, locked every other client out, wire logins too
// (they share the bound); over HTTPS, HTTP/2 let four connections do it.
func (s *Server) limit(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.o.Keeper.Touch()
		snap := s.o.State.Current()
		max := int64(snap.Config.Server.MaxConnections)
		n := s.o.Active.Add(1)
		defer s.o.Active.Add(-1)
		s.o.Metrics.ConnectionOpened("http")
		defer s.o.Metrics.ConnectionClosed("http")
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		rc := http.NewResponseController(w)
		addr := clientAddr(r, snap)
		src := s.o.Throttle.SourceOf(addr, false)
		// The ResponseWriter is the handler's only until it returns.
		var handling sync.Mutex
		finished := false
		adm := s.pending.Add(src, addrText(addr), func() {
			handling.Lock()
			defer handling.Unlock()
			if finished {
				return
			}
			// A body still being read fails at once; a login waiting
			// for the throttle or a hash sees its context end.
			rc.SetReadDeadline(time.Now())
			cancel()
		})
		defer s.pending.Done(adm)
		if n > max {
			victim := s.pending.EvictFor(adm)
			if victim == nil {
				// Closed after the answer: net/http would otherwise
				// read the rest of an unread body first, which a client
				// sending it slowly makes last until the read timeout.
				w.Header().Set("Connection", "close")
				writeError(w, http.StatusServiceUnavailable, codeTooManyConnections, "too many connections")
				return
			}
			s.noteEviction(victim)
		}
		h(w, r.WithContext(context.WithValue(ctx, admissionKey{}, adm)))
		handling.Lock()
		finished = true
		handling.Unlock()
	}
}

// admissionKey is the request context's key of its admission.Client.
type admissionKey struct{}

// sourceOf is the source r's client counts as, as limit named it when the
// request came in.
func sourceOf(r *http.Request) string {
	adm, _ := r.Context().Value(admissionKey{}).(*admission.Client)
	return adm.Source()
}

// authenticated records that r's client proved itself: it no longer
// counts as waiting, and no other source's client takes its place. False
// when it was evicted meanwhile.
func (s *Server) authenticated(r *http.Request) bool {
	adm, _ := r.Context().Value(admissionKey{}).(*admission.Client)
	return s.pending.Done(adm)
}

// noteEviction counts a client ended to make room and says so in the log,
// at most once per logpace.Every, with how many since the last line.
func (s *Server) noteEviction(victim *admission.Client) {
	n, due := s.evictions.Add()
	if !due {
		return
	}
	s.o.Log.Warn("max_connections reached: clients still authenticating were closed to make room for other sources' (the source holding the most goes first)",
		zap.String("address", victim.Addr), zap.Int64("closed", n))
}

// handleReady answers 200 when the backend answers the Postgres way: an
// SSLRequest gets 'S' or 'N'.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
		return
	}
	snap := s.o.State.Current()
	if snap.Login.Unavailable != "" {
		// Every login is refused (the user store is out of reach): a
		// balancer should send clients to an instance that can let them
		// in. Until December 2026 this answered 200 all the while.
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "logins refused: " + snap.Login.Unavailable})
		return
	}
	if err := s.backendReady(snap.Config); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "backend unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// trackConn bounds the open HTTP connections, as the wire's connections
// are bounded. Requests in flight count against server.max_connections
// (see limit), but an idle keep-alive connection is kept for IdleTimeout
// (a request every two minutes keeps it for good) and costs a file
// descriptor and about 12 KiB, so one client holding thousands ran the
// process out of descriptors, and then the wire could accept no one and
// no backend could be opened. Past max_connections open connections, the
// idle connections of every listener are closed to make room (at most
// every 100 ms); up to twice the bound a new connection may still send
// its request, which limit answers 503 or lets take the place of a waiting
// client of the source holding the most; past twice the bound it is
// closed at once.
func (s *Server) trackConn(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		max := int64(s.o.State.Current().Config.Server.MaxConnections)
		n := s.openConns.Add(1)
		// Until its first request has been read (its TLS handshake and
		// headers, up to ReadHeaderTimeout), a connection is recorded
		// against its peer's address, so that one source opening
		// connections and sending nothing cannot fill them all.
		adm := s.newConns.Add(s.peerSource(c), c.RemoteAddr().String(), func() { c.Close() })
		s.newConnsOf.Store(c, adm)
		if n <= max {
			return
		}
		now := time.Now().UnixNano()
		if last := s.idleSweep.Load(); !s.draining.Load() && now-last > int64(100*time.Millisecond) && s.idleSweep.CompareAndSwap(last, now) {
			for _, srv := range s.servers {
				// Turning keep-alives off closes the idle connections.
				srv.SetKeepAlivesEnabled(false)
				srv.SetKeepAlivesEnabled(true)
			}
		}
		if n <= 2*max {
			// Up to twice the bound a connection may still send its
			// request: limit answers it 503, or lets it take the place
			// of a client of the source holding the most slots. Closed
			// here, a source that kept every connection busy (bodies
			// sent slowly) left no other source's request a way in.
			return
		}
		// Past twice the bound: it takes the place of the oldest
		// connection still sending its first request of the source
		// holding the most such, if that source holds more than its own;
		// else it is closed.
		if victim := s.newConns.EvictFor(adm); victim != nil {
			s.noteEviction(victim)
			return
		}
		s.connRequestRead(c)
		c.Close()
	case http.StateActive, http.StateIdle:
		s.connRequestRead(c)
	case http.StateClosed, http.StateHijacked:
		s.connRequestRead(c)
		s.openConns.Add(-1)
	}
}

// connRequestRead ends c's record as a connection still sending its first
// request (see trackConn).
func (s *Server) connRequestRead(c net.Conn) {
	if adm, ok := s.newConnsOf.LoadAndDelete(c); ok {
		s.newConns.Done(adm.(*admission.Client))
	}
}

// peerSource is the source a new connection counts as: its peer's (see
// authcore.Throttle.SourceOf). A trusted proxy's connections are the
// proxy's: which clients they carry is known only from their requests.
func (s *Server) peerSource(c net.Conn) string {
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return s.o.Throttle.SourceOf(ap.Addr(), false)
}

// readyFor is how long /readyz answers from its last look at the backend.
const readyFor = 250 * time.Millisecond

// backendReady pings the backend at most once per readyFor, and one ping
// at a time, whoever asks: each ping is a connection to PostgreSQL, which
// forks a process for it, and /readyz needs no credentials, so before,
// every request to it, a flood's too, made the database server fork.
// Concurrent askers wait for the ping in flight and share its answer. The
// ping runs on a context of its own, so one asker leaving does not make
// the others' answer an error.
func (s *Server) backendReady(cfg *config.Config) error {
	s.ready.mu.Lock()
	defer s.ready.mu.Unlock()
	if !s.ready.at.IsZero() && time.Since(s.ready.at) < readyFor {
		return s.ready.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Backend.ConnectTimeout.Duration+time.Second)
	defer cancel()
	err := backend.Ping(ctx, cfg)
	s.ready.at, s.ready.err = time.Now(), err
	return err
}

// handleResourceMetadata is RFC 9728's protected resource metadata: the
// issuers whose tokens the oauth rules over HTTP take, and their scopes, so
// a client refused with a Bearer challenge learns where to get a token.
func (s *Server) handleResourceMetadata(w http.ResponseWriter, r *http.Request) {
	snap := s.o.State.Current()
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	doc := struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		BearerMethods        []string `json:"bearer_methods_supported"`
		Scopes               []string `json:"scopes_supported,omitempty"`
	}{Resource: scheme + "://" + r.Host, AuthorizationServers: []string{}, BearerMethods: []string{"header"}}
	seen := map[string]bool{}
	for _, rule := range snap.Rules {
		if rule.Method != hba.OAuth || rule.Protocol == hba.ProtoPG {
			continue
		}
		if !seen["i"+rule.Issuer] {
			doc.AuthorizationServers = append(doc.AuthorizationServers, rule.Issuer)
			seen["i"+rule.Issuer] = true
		}
		for _, sc := range strings.Fields(rule.Scope) {
			if !seen["s"+sc] {
				doc.Scopes = append(doc.Scopes, sc)
				seen["s"+sc] = true
			}
		}
	}
	writeJSON(w, http.StatusOK, doc)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// apiError is the body of every error answer.
type apiError struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Detail    string `json:"detail,omitempty"`
	Hint      string `json:"hint,omitempty"`
	Statement *int   `json:"statement,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, apiError{Error: errorBody{Code: code, Message: message}})
}

// Package pgwire is pgwarden's Postgres wire frontend: it negotiates SSL,
// reads the startup packet, asks package hba which method applies, proves the
// client through package authcore, connects to the backend as the mapped role
// and relays the session. Deciding who may log in happens in authcore and
// hba; this package only translates the protocol.
package pgwire

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/certs"
	"github.com/pgwarden/pgwarden/internal/admission"
	"github.com/pgwarden/pgwarden/internal/awake"
	"github.com/pgwarden/pgwarden/internal/listen"
	"github.com/pgwarden/pgwarden/internal/logpace"
	"github.com/pgwarden/pgwarden/metrics"
	"github.com/pgwarden/pgwarden/snapshot"
)

// Server accepts Postgres wire clients on any number of listeners.
type Server struct {
	state    *snapshot.Holder
	log      *zap.Logger
	audit    *zap.Logger
	throttle *authcore.Throttle
	gate     *authcore.Gate
	cancels  *cancelRegistry
	// cancelGuard bounds wrong cancel keys per source.
	cancelGuard *cancelGuard
	// forwards are the cancel requests being forwarded to peers;
	// forwardLoopLog paces the warning about one that came back.
	forwards       forwardsInFlight
	forwardLoopLog logpace.Pace
	// peerSources tell a peer's forwarded cancel requests from clients'.
	peerSources peerSources
	// pending are the clients still authenticating, by source, shared
	// with the HTTP frontend (see admission.Pending); evictions counts and paces the log line about the
	// ones closed to make room.
	pending   *admission.Pending
	evictions logpace.Count
	pool      *backend.Pool
	closing   atomic.Bool
	version   string
	reloadFn  func() error

	ctx    context.Context // canceled on a hard close: ends throttle waits
	cancel context.CancelFunc

	active  *atomic.Int64 // client connections of both protocols
	metrics *metrics.Metrics
	nextID  atomic.Uint64

	mu        sync.Mutex
	conns     map[*conn]struct{}
	listeners []net.Listener
	acceptWG  sync.WaitGroup
	connWG    sync.WaitGroup
	// loops relay plaintext sessions (server.event_loop); nil: goroutines.
	loops  *evLoops
	keeper *awake.Keeper
	// releaseDBs closes idle backends of databases a client's statement
	// is about to drop, rename or copy (Options.ReleaseDatabases).
	releaseDBs func(host string, port int, names []string)
}

// Options are what the server is built from.
type Options struct {
	State    *snapshot.Holder
	Log      *zap.Logger
	Audit    *zap.Logger
	Throttle *authcore.Throttle
	Metrics  *metrics.Metrics
	// Version is what SHOW VERSION says.
	Version string
	// Reload re-reads the configuration (SIGHUP's work) for RELOAD and
	// for admin commands that change the users file.
	Reload func() error
	// Active counts client connections of both protocols against
	// server.max_connections.
	Active *atomic.Int64
	// Pending records the clients of both protocols still authenticating,
	// by source, so that one source cannot hold every slot (nil: this
	// server's own).
	Pending *admission.Pending
	// Keeper is touched at every accepted connection and by the event
	// loops while sessions are in use (nil: none).
	Keeper *awake.Keeper
	// ReleaseDatabases closes the idle backends, of both frontends, of the
	// databases a client's DROP, ALTER or CREATE DATABASE names, so that
	// PostgreSQL does not find them connected (nil: this server's own
	// parked backends only).
	ReleaseDatabases func(host string, port int, names []string)
}

// NewServer makes a server; call Listen, then Serve.
func NewServer(o Options) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		state: o.State, log: o.Log, audit: o.Audit, throttle: o.Throttle, metrics: o.Metrics, active: o.Active,
		gate:        &authcore.Gate{Throttle: o.Throttle},
		cancels:     newCancelRegistry(o.State.Current().Config.Server.PeerID),
		cancelGuard: newCancelGuard(),
		pending:     o.Pending,
		pool:        backend.NewPool(),
		version:     o.Version, reloadFn: o.Reload, keeper: o.Keeper, releaseDBs: o.ReleaseDatabases,
		ctx: ctx, cancel: cancel,
		conns: make(map[*conn]struct{}),
	}
	if s.releaseDBs == nil {
		s.releaseDBs = s.ReleaseDatabases
	}
	if s.pending == nil {
		s.pending = admission.New()
	}
	return s
}

// ReleaseDatabases closes the parked backends of the named databases on
// host:port (see backend.Pool.ReleaseDatabases).
func (s *Server) ReleaseDatabases(host string, port int, names []string) {
	s.pool.ReleaseDatabases(host, port, names, time.Now())
}

// databaseStatement is what the relays call when a client's message holds
// a database statement: the idle backends of the databases it names are
// closed, off the relay's goroutine.
func (s *Server) databaseStatement(clientID uint64, host string, port int) func(names []string) {
	return func(names []string) {
		s.log.Debug("closing idle backends of databases a statement names", zap.Uint64("client_id", clientID), zap.Strings("names", names))
		go s.releaseDBs(host, port, names)
	}
}

// Listen opens the TCP listeners of server.pg_listen and, when
// server.unix_socket_dir is set, the unix socket named after the first
// listener's port, as PostgreSQL names it.
func (s *Server) Listen() error {
	cfg := s.state.Current().Config
	for _, addr := range cfg.Server.PGListen {
		ln, err := listen.TCP(addr, cfg.Server.ReusePort)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		s.listeners = append(s.listeners, ln)
	}
	if dir := cfg.Server.UnixSocketDir; dir != "" && len(cfg.Server.PGListen) > 0 {
		_, port, _ := net.SplitHostPort(cfg.Server.PGListen[0])
		if port == "0" {
			port = strconv.Itoa(s.listeners[0].Addr().(*net.TCPAddr).Port)
		}
		path := filepath.Join(dir, ".s.PGSQL."+port)
		ln, err := listenUnix(path, cfg.Server.ReusePort)
		if err != nil {
			s.closeListeners()
			return err
		}
		s.listeners = append(s.listeners, ln)
	}
	return nil
}

// listenUnix listens on path, removing a stale socket left by a process
// that died, but never one that still answers, unless takeOver
// (server.reuse_port): a new process listening beside the old one for an
// upgrade then binds a socket of its own and renames it over the old one's
// name, so that new clients come to it while the old process's socket,
// left without a name, serves only what it already accepted. Before
// December 2026 the new process refused to start whenever
// unix_socket_dir was set (its default is /tmp), so the upgrade that
// reuse_port is for needed unix_socket_dir = "". Each process removes the
// file when it closes only while the name is still its own socket's: the
// old one, draining, would otherwise have removed the new one's.
func listenUnix(path string, takeOver bool) (net.Listener, error) {
	bindAt := path
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			if !takeOver {
				return nil, fmt.Errorf("listen on %s: another server is using this socket", path)
			}
			bindAt = path + ".new"
			os.Remove(bindAt) // left by a process that died taking over
		} else {
			os.Remove(path)
		}
	}
	ul, err := net.Listen("unix", bindAt)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", bindAt, err)
	}
	ul.(*net.UnixListener).SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		ul.Close()
		os.Remove(bindAt) // nothing there once renamed
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// As PostgreSQL's default unix_socket_permissions: HBA decides who gets in.
	if err := os.Chmod(bindAt, 0o777); err != nil {
		return fail(err)
	}
	if bindAt != path {
		if err := os.Rename(bindAt, path); err != nil {
			return fail(err)
		}
	}
	own, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	ln := listen.Wrap(ul)
	ln.Name = &net.UnixAddr{Name: path, Net: "unix"}
	ln.OnClose = func() {
		if now, err := os.Lstat(path); err == nil && os.SameFile(own, now) {
			os.Remove(path)
		}
	}
	return ln, nil
}

// Addrs returns the addresses being listened on.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]net.Addr, len(s.listeners))
	for i, ln := range s.listeners {
		out[i] = ln.Addr()
	}
	return out
}

// eventLoops is how many event loops to run: n, or for 0 half of the
// cores Go runs on (at least one). On two cores one loop took about 12%
// less CPU per transaction than two (select-only and TPC-B-like, 8
// clients: README, The event loop), since each wake-up finds more ready
// sessions; a loop's own work per message is a few microseconds, so one
// loop per two cores leaves room on larger machines.
func eventLoops(n int) int {
	if n > 0 {
		return n
	}
	return max(1, awake.WorkProcs()/2)
}

// Serve starts one accept loop per listener and returns at once.
func (s *Server) Serve() {
	s.pool.Start(func() backend.PoolLimits { return backend.LimitsOf(s.state.Current().Config) })
	if s.state.Current().Config.Server.EventLoop {
		loops, err := newEvLoops(eventLoops(s.state.Current().Config.Server.EventLoops), s.keeper)
		if err != nil {
			s.log.Warn("event loops not available; sessions are relayed by goroutines", zap.Error(err))
		}
		s.loops = loops
	}
	for _, ln := range s.listeners {
		s.acceptWG.Add(1)
		go s.acceptLoop(ln)
	}
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.acceptWG.Done()
	_, local := ln.Addr().(*net.UnixAddr)
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, as net/http does.
			s.log.Warn("accept failed", zap.Stringer("listener", ln.Addr()), zap.Error(err))
			time.Sleep(backoff)
			if backoff < time.Second {
				backoff *= 2
			}
			continue
		}
		backoff = 5 * time.Millisecond
		s.keeper.Touch()
		// TCP_NODELAY and keepalive are on already: the net package sets
		// both on every accepted connection (two system calls per login
		// saved by not setting them again).
		s.connWG.Add(1)
		go s.handle(c, local)
	}
}

// ActiveConnections is the number of client connections now open.
func (s *Server) ActiveConnections() int64 { return s.active.Load() }

func (s *Server) track(c *conn) {
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.listeners {
		ln.Close()
	}
}

// drainListeners stops listening without resetting the connections queued
// in the kernel's backlogs: the accept loops serve those (a balancer has
// already told their clients they are connected).
func (s *Server) drainListeners() {
	s.mu.Lock()
	lns := append([]net.Listener(nil), s.listeners...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, ln := range lns {
		if d, ok := ln.(*listen.Listener); ok {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.Drain()
			}()
		}
	}
	wg.Wait()
	s.closeListeners()
}

// Shutdown drains as a load balancer understands (SPEC section 7): the
// listeners close at once, so new connections are refused and TCP health
// checks fail, while established sessions go on until ctx ends; then every
// remaining session is ended as Close ends it.
func (s *Server) Shutdown(ctx context.Context) {
	s.drainListeners()
	s.takeDrainingCancels()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for s.sessions() > 0 {
		select {
		case <-ctx.Done():
			break wait
		case <-tick.C:
		}
	}
	s.Close()
}

// sessions counts connections that are past authentication or still
// authenticating and not refused.
func (s *Server) sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		if !c.refusing.Load() {
			n++
		}
	}
	return n
}

// Close stops listening and ends every connection now: each relayed
// session's client is told FATAL 57P01 `terminating connection due to
// administrator command` before its socket closes (at most a second is
// given for that); anything left is closed.
func (s *Server) Close() {
	s.closing.Store(true)
	s.closeListeners()
	s.acceptWG.Wait()
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.terminate()
	}
	s.mu.Unlock()
	told := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(told)
	}()
	select {
	case <-told:
	case <-time.After(time.Second):
		s.mu.Lock()
		for c := range s.conns {
			c.close()
		}
		s.mu.Unlock()
		<-told
	}
	if s.loops != nil {
		s.loops.close()
	}
	s.pool.Close()
}

// PoolStats reports the backend pool's figures.
func (s *Server) PoolStats() backend.Stats { return s.pool.Stats() }

// BackendPool is the pool that counts every backend against
// max_backend_connections, for the HTTP frontend to count its own in.
func (s *Server) BackendPool() *backend.Pool { return s.pool }

func (s *Server) reload() error {
	if s.reloadFn == nil {
		_, err := s.state.Reload()
		return err
	}
	return s.reloadFn()
}

// clients lists the authenticated wire clients for SHOW CLIENTS.
func (s *Server) clients() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rows [][]string
	for c := range s.conns {
		c.mu.Lock()
		if c.user != "" {
			rows = append(rows, []string{strconv.FormatUint(c.id, 10), "pg", c.user, c.database, c.addrString(), c.method,
				strconv.FormatBool(c.ssl), c.since.UTC().Format(time.RFC3339)})
		}
		c.mu.Unlock()
	}
	sort.Slice(rows, func(i, j int) bool {
		a, _ := strconv.Atoi(rows[i][0])
		b, _ := strconv.Atoi(rows[j][0])
		return a < b
	})
	return rows
}

// kill closes the client with id; false if there is none.
func (s *Server) kill(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.id == id {
			c.close()
			return true
		}
	}
	return false
}

// KillUser closes every wire session of user: what a password change made
// elsewhere (the web console) does to them, as ALTER USER does.
func (s *Server) KillUser(user string) { s.killUser(user, nil) }

// EndRevokedSessions ends the sessions whose login the reload from old to
// next revoked (see snapshot.Holder.OnReload): those of the users
// authcore.Revoked names, and those a client certificate proved that
// next's TLS material no longer accepts.
func (s *Server) EndRevokedSessions(old, next *snapshot.Snapshot) {
	s.endSessionsOf(authcore.Revoked(old.Users, next.Users, time.Now()), "a reload revoked the user's login: their wire sessions end")
	if old.TLS != next.TLS {
		for _, name := range s.endRevokedCertificates(next.TLS) {
			s.log.Info("a reload revoked the client certificate a wire session logged in with: it ends", zap.String("user", name))
		}
	}
}

// EndFoundRevocations ends the sessions of the users whose login a change
// found in the store by an update of the users revoked (see
// snapshot.Holder.OnUpdate).
func (s *Server) EndFoundRevocations(names []string) {
	s.endSessionsOf(names, "a change found in the users store revoked the user's login: their wire sessions end")
}

func (s *Server) endSessionsOf(names []string, why string) {
	for _, name := range names {
		s.log.Info(why, zap.String("user", name))
		s.KillUser(name)
	}
}

// endRevokedCertificates closes every session whose login a client
// certificate proved, when mat no longer accepts that certificate (listed
// in its crl_file, or issued by a CA it no longer holds), judged at the
// time the certificate was verified: a reload revokes, it does not expire.
// It returns the users of the sessions it ended.
func (s *Server) endRevokedCertificates(mat *certs.Material) []string {
	type held struct {
		c     *conn
		chain []*x509.Certificate
		at    time.Time
		user  string
	}
	var certified []held
	s.mu.Lock()
	for c := range s.conns {
		c.mu.Lock()
		if !c.certAt.IsZero() && c.tls != nil {
			certified = append(certified, held{c, c.tls.PeerCertificates, c.certAt, c.user})
		}
		c.mu.Unlock()
	}
	s.mu.Unlock()
	var ended []string
	for _, h := range certified {
		if mat != nil {
			if _, err := mat.VerifyClient(h.chain, h.at); err == nil {
				continue
			}
		}
		h.c.close()
		ended = append(ended, h.user)
	}
	return ended
}

// killUser closes every session of user but except (the admin's own).
func (s *Server) killUser(user string, except *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.mu.Lock()
		match := c.user == user && c != except
		c.mu.Unlock()
		if match {
			c.close()
		}
	}
}

package pgwire

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/certs"
	"github.com/pgwarden/pgwarden/hba"
	"github.com/pgwarden/pgwarden/internal/admission"
	"github.com/pgwarden/pgwarden/snapshot"
)

// conn is one client connection from accept to close.
type conn struct {
	srv   *Server
	id    uint64
	raw   net.Conn
	local bool
	addr  netip.Addr
	since time.Time

	// pre holds bytes read while looking for a PROXY header that turned
	// out to be the client's own; they are read again first.
	pre []byte
	// stream is what the client protocol runs over: raw, or TLS on it.
	stream net.Conn
	cc     *clientConn
	ssl    bool
	tls    *tls.ConnectionState
	tlsMat *certs.Material // the TLS material this connection's handshake used
	// src is the source c counts as, once known (see source).
	src string

	// refusing is set once the connection is only being told why it is
	// refused; a draining server does not wait for those.
	refusing atomic.Bool
	// terminating: the server is ending this session (see terminate).
	terminating atomic.Bool

	mu      sync.Mutex
	backend net.Conn
	closed  bool
	// ev is the session's place in an event loop, once it relays there:
	// closing and terminating go through the loop, which owns the sockets.
	ev *evSession
	// Set once authenticated, for SHOW CLIENTS, KILL and ending a
	// dropped user's sessions.
	user, database, method string
	// adm records the connection as still authenticating, against its
	// source (see admission.Pending); nil until it is recorded.
	adm *admission.Client
	// certAt is when a client certificate was verified for this login
	// (zero: none was): a reload whose crl_file revokes it, or whose
	// client CA no longer issues it, ends the session.
	certAt time.Time
}

func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.ev != nil {
		c.ev.kill()
		return
	}
	c.raw.Close()
	if c.backend != nil {
		c.backend.Close()
	}
}

// terminate ends the connection because the server stops. A relayed
// session's backend is closed, and its relay tells the client FATAL 57P01
// (as PostgreSQL does) before closing the client's socket; any other
// connection (still authenticating, the admin console) is closed at once.
func (c *conn) terminate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.ev != nil {
		c.terminating.Store(true)
		c.ev.terminate()
		return
	}
	if c.backend != nil {
		c.terminating.Store(true)
		c.backend.Close()
		return
	}
	c.closed = true
	c.raw.Close()
}

// setBackend records the backend so that a hard close reaches it; it
// reports false when the connection was closed meanwhile.
func (c *conn) setBackend(b net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.backend = b
	return true
}

// addrString names the client in logs, the audit log, the throttle and
// SHOW CLIENTS: its address, or on the unix socket its OS user
// ("local:UID", see localSource).
func (c *conn) addrString() string {
	if c.local {
		return c.src
	}
	return hba.AddrText(c.addr, c.local)
}

func (s *Server) handle(raw net.Conn, local bool) {
	c := &conn{srv: s, id: s.nextID.Add(1), raw: raw, stream: raw, local: local, since: time.Now()}
	if local {
		// Before the connection is tracked: SHOW CLIENTS reads it.
		c.src = localSource(raw)
	} else {
		if ap, err := netip.ParseAddrPort(raw.RemoteAddr().String()); err == nil {
			c.addr = ap.Addr().Unmap()
		}
	}
	s.track(c)
	snap := s.state.Current()
	max := int64(snap.Config.Server.MaxConnections)
	n := s.active.Add(1)
	s.metrics.ConnectionOpened("pg")
	handedOff := false
	defer func() {
		if !handedOff {
			c.finish()
		}
	}()
	over, roomMade := n > max, false
	if n > 2*max {
		// Far over the limit: not even the refusal is worth a goroutine's
		// time. (Up to 2x, clients still get a proper 53300, and cancel
		// requests, which need no slot, are still served.) A client
		// whose address is its source (or the unix socket's) may still
		// take the place of a connection of the source crowding the
		// slots (see pendingConns); behind a PROXY header the source is
		// not known yet.
		behindProxy := snap.Config.Server.ProxyProtocol != "off" && snap.TrustedProxy(c.addr)
		if behindProxy {
			return
		}
		defer func() { s.pending.Done(c.adm) }()
		if !s.makeRoom(c) {
			return
		}
		over, roomMade = false, true
	}
	raw.SetDeadline(time.Now().Add(snap.Config.Server.AuthTimeout.Duration))
	c.cc = newClientConn(raw)
	if mode := snap.Config.Server.ProxyProtocol; mode != "off" && !local {
		if !snap.TrustedProxy(c.addr) {
			if mode == "required" {
				// Every connection must come through a trusted proxy.
				s.log.Warn("connection from an untrusted address refused (proxy_protocol = required)", zap.String("address", c.addrString()))
				return
			}
		} else {
			h, pre, err := readProxyHeader(raw)
			switch {
			case err != nil:
				s.log.Warn("bad PROXY header", zap.String("proxy", c.addrString()), zap.Error(err))
				return
			case h == nil && mode == "required":
				s.log.Warn("no PROXY header from a trusted proxy (proxy_protocol = required)", zap.String("proxy", c.addrString()))
				return
			case h != nil:
				c.addr = proxyClient(h, c.addr)
			}
			c.pre = pre
		}
	}
	if !roomMade {
		if over {
			over = !s.makeRoom(c)
		} else {
			c.waitToAuthenticate()
		}
		defer func() { s.pending.Done(c.adm) }()
	}
	if err := c.serve(snap, over); err != nil {
		if errors.Is(err, errHandedOff) {
			handedOff = true
			return
		}
		c.fail(err)
	}
}

// finish ends the connection's accounting: the goroutine that served it
// calls it, or, for a session handed off (to an event loop or to relay
// goroutines of its own, see errHandedOff), the end of that session.
func (c *conn) finish() {
	c.srv.metrics.ConnectionClosed("pg")
	c.srv.active.Add(-1)
	c.raw.Close()
	c.srv.untrack(c)
	c.srv.connWG.Done()
}

// fail tells the client why its connection ends, when that is still
// possible, and logs what the client is not told.
func (c *conn) fail(err error) {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = AuthTimeout()
	case clientClosed(err), errors.Is(err, errSilentClose):
		return
	}
	var pe *Error
	if !errors.As(err, &pe) && !isBackendError(err) {
		c.srv.log.Error("connection failed", zap.Uint64("client_id", c.id), zap.String("address", c.addrString()), zap.Error(err))
	}
	c.raw.SetWriteDeadline(time.Now().Add(2 * time.Second))
	c.cc.wbuf = c.cc.wbuf[:c.cc.kept]
	c.cc.send(errorResponse(err))
	c.cc.flush()
}

// clientClosed says whether err is the client's connection closing: there
// is no one left to answer.
func clientClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// errSilentClose ends a connection without a word (a cancel request, a
// failed TLS handshake).
var errSilentClose = errors.New("close silently")

// serve runs the connection: negotiation, authentication, backend, relay.
func (c *conn) serve(snap *snapshot.Snapshot, overLimit bool) error {
	sp, err := c.negotiate(snap)
	if err != nil {
		return err
	}
	if overLimit {
		c.refusing.Store(true)
		return TooManyConnections()
	}
	// A connection accepted before a SIGTERM closed the listeners was
	// sent here by a balancer that saw the port open: it is served like
	// the sessions the drain waits for. Only the final close (SIGINT, or
	// shutdown_timeout reached) refuses whoever is still negotiating.
	if c.srv.closing.Load() {
		c.refusing.Store(true)
		return ShuttingDown()
	}
	if sp.minor > 0 || len(sp.unknownOptions) > 0 {
		// Newer minor or _pq_ options: say what we speak and go on as 3.0.
		c.cc.send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: sp.unknownOptions})
	}
	repl, err := parseReplication(sp.get("replication"), sp.has("replication"))
	if err != nil {
		return err
	}
	sp.normalizeReplication(repl)
	user := sp.get("user")
	if user == "" {
		return &Error{Code: codeInvalidAuthorization, Message: "no PostgreSQL user name specified in startup packet"}
	}
	db := sp.get("database")
	if db == "" {
		db = user
	}
	a := &authcore.Attempt{Protocol: hba.ProtoPG, Addr: c.addr, Local: c.local, SSL: c.ssl, User: user, Database: db,
		Replication: repl == replicationPhysical, Address: c.addrString(), ClientID: c.id}
	id, ref, ev := c.srv.gate.Login(c.ctx(), snap.Login, a, wireProver{c})
	if ref != nil {
		if errors.Is(ref, os.ErrDeadlineExceeded) {
			ev.Reason = "authentication timeout"
		}
		c.audit(ev)
		return refusalError(ref, a)
	}
	if !c.srv.pending.Done(c.adm) {
		// Closed to make room while it authenticated.
		return errSilentClose
	}
	c.mu.Lock()
	c.user, c.database, c.method = user, db, string(id.Rule.Method)
	c.mu.Unlock()
	// From here a reload that revokes the login ends this session by its
	// user (EndRevokedSessions); one that came while it logged in did not
	// see it, so the state in force now must still accept it.
	if ref := c.revokedDuringLogin(snap, user); ref != nil {
		ev.Result, ev.Reason = authcore.ResultFailed, ref.Reason
		c.audit(ev)
		return refusalError(ref, a)
	}

	// AuthenticationOk goes out with the session's first messages (its
	// ParameterStatus, BackendKeyData and ReadyForQuery, or the error
	// that ends it), in one write instead of two: a client waits for
	// ReadyForQuery either way, and the backend is found meanwhile.
	c.cc.send(&pgproto3.AuthenticationOk{})
	c.cc.keep()
	// auth_timeout bounds authentication, as PostgreSQL's
	// authentication_timeout does, and authentication is over: a slow
	// backend login must not fail the client as an authentication
	// timeout. The backend phase has its own bounds (connect_timeout to
	// wait for a backend slot, connect_timeout to open one); this deadline
	// covers them and gives the client auth_timeout again for the rest of
	// the handshake.
	cfg := snap.Config
	c.raw.SetDeadline(time.Now().Add(2*cfg.Backend.ConnectTimeout.Duration + settingsCheckTimeout + cfg.Server.AuthTimeout.Duration))
	if db == snap.Config.Server.AdminDatabase {
		c.audit(ev)
		return c.adminConsole(snap, id)
	}
	// The audit line waits for the backend: a backend that refuses
	// pgwarden's login is recorded as such.
	return c.startSession(snap, sp, id, db, ev)
}

// revokedDuringLogin refuses a login that a reload revoked while it was
// under way: the login was judged by snap, the state when the connection
// was accepted, and a client decides how long its exchange takes (up to
// auth_timeout), so without this a password or client certificate revoked
// in the meantime would still open a session, one that no later reload
// ends. A reload after c.user was set finds the session itself.
func (c *conn) revokedDuringLogin(snap *snapshot.Snapshot, user string) *authcore.Refusal {
	cur := c.srv.state.Current()
	if cur == snap {
		return nil
	}
	if ref := authcore.RevokedSince(snap.Login, cur.Login, user, time.Now()); ref != nil {
		return ref
	}
	c.mu.Lock()
	certAt, mat := c.certAt, c.tlsMat
	c.mu.Unlock()
	if !certAt.IsZero() && cur.TLS != mat {
		if cur.TLS == nil {
			return &authcore.Refusal{Kind: authcore.RefusedCertRequired, Reason: "client certificate: TLS was turned off by a reload during the login"}
		}
		if _, err := cur.TLS.VerifyClient(c.tls.PeerCertificates, certAt); err != nil {
			return &authcore.Refusal{Kind: authcore.RefusedCertRequired, Reason: "client certificate: revoked by a reload during the login: " + err.Error()}
		}
	}
	return nil
}

// negotiate reads untyped packets until the StartupMessage: SSLRequest and
// GSSENCRequest are answered, a CancelRequest is forwarded and ends the
// connection.
func (c *conn) negotiate(snap *snapshot.Snapshot) (*startupPacket, error) {
	src := io.Reader(c.raw)
	if len(c.pre) > 0 {
		src = io.MultiReader(bytes.NewReader(c.pre), c.raw)
	}
	// One read takes what has come, up to the 8 bytes of an SSLRequest
	// (its whole packet, in the usual case, where reading the first byte,
	// then the rest of the length, then the code cost three), and never
	// more: bytes sent after an SSLRequest must stay in the socket, where
	// the TLS handshake finds them and refuses the connection.
	var head [8]byte
	n, err := io.ReadAtLeast(src, head[:], 1)
	if err != nil {
		return nil, err
	}
	var in io.Reader = io.MultiReader(bytes.NewReader(head[:n]), src)
	sslDone, gssDone := false, false
	if head[0] == tlsRecordHandshake {
		// Direct TLS (sslnegotiation=direct): no SSLRequest comes.
		if snap.TLS == nil || c.local {
			return nil, errSilentClose
		}
		if err := c.handshake(snap, &prefixConn{Conn: c.raw, r: in}, true); err != nil {
			return nil, err
		}
		in, sslDone = c.stream, true
	}
	for {
		sp, err := readStartupPacket(in)
		if err != nil {
			return nil, err
		}
		switch sp.kind {
		case kindCancel:
			c.refusing.Store(true)
			// A peer forwards in plain text, as the first packet.
			forwarded := !sslDone && !gssDone && c.srv.fromPeer(snap.Config, c.raw) && readForwardMark(in, c.raw)
			v := c.srv.cancelRequest(snap.Config, c.addr, c.source(), sp.cancelPID, sp.cancelKey, forwarded)
			if forwarded && v != verdictNone {
				c.raw.Write([]byte{byte(v)})
			}
			return nil, errSilentClose
		case kindSSLRequest:
			if sslDone {
				return nil, ProtocolViolation("SSL negotiation was already done")
			}
			sslDone = true
			if err := c.startTLS(snap); err != nil {
				return nil, err
			}
		case kindGSSENCRequest:
			if gssDone {
				return nil, ProtocolViolation("GSSAPI encryption negotiation was already done")
			}
			if sslDone && c.stream != c.raw {
				// GSSAPI encryption cannot start inside TLS, and
				// PostgreSQL takes both negotiations as done once TLS
				// runs (before December 2026 this was answered 'N', and
				// the login waited for a StartupMessage).
				return nil, ProtocolViolation("GSSAPI encryption requested inside an SSL connection")
			}
			gssDone = true
			if _, err := c.stream.Write([]byte{'N'}); err != nil {
				return nil, err
			}
		default:
			return sp, nil
		}
		// The prefix bytes are consumed; TLS may have replaced the stream.
		in = c.stream
		if sslDone {
			// No TLS can start any more, so nothing needs to stay unread
			// in the socket: the next packets come through the client's
			// buffered reader (one read for a StartupMessage's length and
			// body, where two read them), which keeps whatever the client
			// sent after them for the exchange that follows.
			in = c.cc.r
		}
	}
}

// ctx is the context of work done for this connection.
func (c *conn) ctx() context.Context { return c.srv.ctx }

// audit records an authentication attempt in the audit log and metrics.
func (c *conn) audit(ev *authcore.AuditEvent) {
	ev.Log(c.srv.audit)
	c.srv.metrics.AuthAttempt("pg", ev.Method, ev.Result, time.Since(c.since))
}

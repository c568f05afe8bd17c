package pgwire

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/snapshot"
)

// connectBackend logs in to the backend and takes over its socket. When
// the backend may be reused it also reads the role and database settings
// the backend started with (backend.SettingsQuery), so that a later reset
// can tell whether they changed; a backend that cannot answer that query
// is used once and not reused (ok false).
func connectBackend(ctx context.Context, pc *pgconn.Config, reuse bool) (hc *pgconn.HijackedConn, settings string, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, pc.ConnectTimeout)
	defer cancel()
	pg, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, "", false, err
	}
	if reuse {
		settings, err = backend.ReadSettings(ctx, pg)
		ok = err == nil
		if err != nil && pg.IsClosed() {
			return nil, "", false, err
		}
	}
	// pgconn may have a background read in flight (it starts one when a
	// write is slow, to avoid a write/read deadlock) or bytes buffered.
	// Taking the socket over without SyncConn would let that read swallow
	// the first reply the backend sends to the client's first query.
	if err := pg.SyncConn(ctx); err != nil {
		pg.Close(ctx)
		return nil, "", false, err
	}
	hc, err = pg.Hijack()
	if err != nil {
		pg.Close(ctx)
		return nil, "", false, err
	}
	// A SCRAM pass-through login ran under a wrapper; the relay needs the
	// socket itself.
	hc.Conn = backend.Unwrap(hc.Conn)
	return hc, settings, ok, nil
}

func isBackendError(err error) bool { return backend.IsServerError(err) }

// backendFailure turns a failed backend connect into what the client sees:
// the backend's own error when it answered, 08006 when it could not be
// reached.
func (c *conn) backendFailure(t backend.Target, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		c.srv.log.Info("backend refused session", zap.Uint64("client_id", c.id), zap.String("role", t.Role),
			zap.String("database", t.Database), zap.String("sqlstate", pe.Code), zap.String("message", pe.Message))
		if r := backend.LoginRefusal(pe, t.Role); r != nil {
			return &Error{Code: r.Code, Message: r.Message, Detail: r.Detail, Hint: r.Hint}
		}
		return err
	}
	c.srv.log.Warn("backend unreachable", zap.Uint64("client_id", c.id), zap.String("host", t.Host),
		zap.Int("port", t.Port), zap.Error(err))
	return BackendUnreachable()
}

// cancelAddr is where CancelRequests for hc's backend are sent: the
// address it was reached at.
func cancelAddr(hc *pgconn.HijackedConn) (string, string) {
	if a, ok := hc.Conn.RemoteAddr().(*net.TCPAddr); ok {
		return "tcp", a.String()
	}
	return backend.Address(hc.Config.Host, int(hc.Config.Port))
}

// startSession hands the client a backend (a parked one of the same key
// when reuse is on, else a new login), makes the client ready, relays, and
// afterwards parks the backend again when it was left idle.
func (c *conn) startSession(snap *snapshot.Snapshot, sp *startupPacket, id *authcore.Identity, db string, ev *authcore.AuditEvent) error {
	cfg := snap.Config
	defer id.SCRAM.Forget()
	t, routeErr := backend.Route(cfg, id.Name, id.User, backend.Credentials{Password: id.Password, SCRAM: id.SCRAM}, db)
	audited := false
	audit := func(err error) {
		if !audited {
			if err != nil {
				ev.Result, ev.Reason = authcore.ResultBackend, backend.RefusalReason(err)
			}
			c.audit(ev)
			audited = true
		}
	}
	defer audit(nil)
	var refused backend.RouteRefusal
	if errors.As(routeErr, &refused) {
		audit(routeErr)
		return &Error{Code: refused.SQLState(), Message: refused.Error(), Detail: refused.ClientDetail()}
	}
	params := make(map[string]string, len(sp.params))
	for _, p := range sp.params {
		params[p.name] = p.value
	}
	// Replication connections speak another protocol after startup and are
	// never reused.
	reuse := cfg.Backend.Reuse && sp.get("replication") == ""
	limits := backend.LimitsOf(cfg)
	key := backend.NewKey(t, params)
	pool := c.srv.pool

	// parkedBackend takes a parked backend of the key that is alive and
	// still has the role and database settings a fresh one would get.
	parkedBackend := func() *backend.Session {
		for reuse {
			s := pool.Get(key, limits, time.Now())
			if s == nil {
				return nil
			}
			if !alive(s.Conn) {
				pool.Discard(s)
				continue
			}
			if err := settingsCurrent(s, settingsCheckTimeout); err != nil {
				c.srv.log.Debug("parked backend not reused", zap.Uint64("client_id", c.id), zap.Uint32("pid", s.PID), zap.Error(err))
				pool.Discard(s)
				continue
			}
			return s
		}
		return nil
	}
	acquireStart := time.Now()
	s := parkedBackend()
	// At max_backend_connections the login waits (within connect_timeout)
	// for a backend to be released, as PgBouncer queues a client: in a
	// burst of short sessions the ones ending make room, and a session
	// whose client already sent Terminate looks busy until the relay
	// reads it.
	deadline := acquireStart.Add(cfg.Backend.ConnectTimeout.Duration)
	var turn *backend.Waiter
	for s == nil {
		if turn = pool.ReserveOrQueue(limits, turn); turn == nil {
			break // s stays nil: a new backend is opened below
		}
		if !pool.WaitTurn(c.ctx(), turn, deadline) {
			if c.srv.closing.Load() {
				audit(auditReason("the server closed while the login waited for a backend at max_backend_connections"))
				return ShuttingDown()
			}
			c.srv.log.Warn("backend connection limit reached", zap.Uint64("client_id", c.id), zap.Int("max_backend_connections", cfg.Backend.MaxBackendConnections))
			audit(backend.ErrTooManyBackends)
			return &Error{Code: codeTooManyConnections, Message: "too many backend connections"}
		}
		if peekSocket(c.raw) == socketClosed {
			// A client that gave up during the wait (its own connect
			// timeout) would take a parked backend only to lose it, or
			// cost PostgreSQL a backend login for nobody: under overload,
			// the more clients give up, the more of that.
			pool.PassTurn()
			c.srv.log.Debug("client left while its login waited for a backend", zap.Uint64("client_id", c.id))
			audit(errClientLeftWaiting)
			return errSilentClose
		}
		s = parkedBackend()
	}
	if s == nil {
		pc, err := backend.Config(cfg, t, params)
		if err != nil {
			pool.Release()
			audit(err)
			return err
		}
		connectStart := time.Now()
		hc, settings, known, err := connectBackend(c.ctx(), pc, reuse)
		if err == nil {
			c.srv.metrics.BackendConnect("pg", time.Since(connectStart))
		}
		if err != nil {
			pool.Release()
			audit(err)
			return c.backendFailure(t, err)
		}
		if reuse && !known {
			c.srv.log.Warn("backend will not be reused: its role and database settings could not be read",
				zap.Uint64("client_id", c.id), zap.String("role", t.Role), zap.String("database", t.Database))
			reuse = false
		}
		network, addr := cancelAddr(hc)
		s = &backend.Session{Conn: hc.Conn, Key: key, PID: hc.PID, Secret: hc.SecretKey, Params: hc.ParameterStatuses,
			Created: time.Now(), CancelNetwork: network, CancelAddr: addr, Settings: settings}
		// Anything the backend sent after its ReadyForQuery (a NOTICE, a
		// ParameterStatus) that pgconn already buffered is passed on.
		for hc.Frontend.ReadBufferLen() > 0 {
			m, err := hc.Frontend.Receive()
			if err != nil {
				pool.Discard(s)
				return c.backendFailure(t, err)
			}
			c.cc.send(m)
		}
	}
	c.srv.metrics.BackendAcquire("pg", time.Since(acquireStart))
	// The backend is logged in: a SCRAM client's keys are not kept for
	// the length of its session.
	id.SCRAM.Forget()
	if !c.setBackend(s.Conn) {
		pool.Discard(s)
		return errSilentClose
	}
	audit(nil)

	// Make the client ready as PostgreSQL would after AuthenticationOk:
	// the backend's ParameterStatus values (for a reused backend, as its
	// reset left them, which are its startup values again), then
	// BackendKeyData with the backend's real pid and a key of our own
	// (the client cancels through us), then ReadyForQuery.
	for name, value := range s.Params {
		c.cc.send(&pgproto3.ParameterStatus{Name: name, Value: value})
	}
	s.ShareParams()
	target := &cancelTarget{network: s.CancelNetwork, addr: s.CancelAddr, pid: s.PID, secret: s.Secret}
	c.srv.cancels.register(target)
	registered := true
	retireKey := func() {
		if registered {
			c.srv.cancels.unregister(target)
			registered = false
		}
	}
	handedOff := false
	defer func() {
		if !handedOff {
			retireKey()
		}
	}()
	c.cc.send(&pgproto3.BackendKeyData{ProcessID: s.PID, SecretKey: target.key[:]})
	c.cc.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := c.cc.flush(); err != nil {
		pool.Discard(s)
		return err
	}
	// Authentication is over: no more deadline on the client socket, and
	// the output buffer of the handshake is not kept for an idle session.
	c.raw.SetDeadline(noDeadline)
	c.cc.wbuf = nil
	c.srv.log.Debug("session started", zap.Uint64("client_id", c.id), zap.String("role", t.Role),
		zap.String("database", t.Database), zap.Int("reuses", s.Reuses))
	// giveUp ends a backend that will not be reused. One that still owes
	// answers stays counted until it has given them (see
	// backend.Pool.Abandon).
	giveUp := func(owe *owedAnswers) {
		if owe != nil && !c.srv.closing.Load() {
			owe.cancel = func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				backend.SendCancel(ctx, s.CancelNetwork, s.CancelAddr, s.PID, s.Secret)
			}
			pool.Abandon(s, owe.feed)
			return
		}
		pool.Discard(s)
	}
	if !reuse {
		giveUp(relay(c.cc, s.Conn, &c.terminating, c.srv.metrics))
		return nil
	}
	// After the relay: the client is gone, and its key must not reach
	// whoever gets this backend next.
	after := func(idle, keptState bool, owe *owedAnswers) {
		retireKey()
		if !idle || c.srv.closing.Load() {
			giveUp(owe)
			return
		}
		if keptState {
			// DISCARD ALL cannot remove a custom setting's placeholder (the
			// next client would read '' where a fresh session reads NULL)
			// or a dblink connection.
			c.srv.log.Debug("backend not reused: the session may have left state no reset removes (a custom setting, a dblink connection)", zap.Uint64("client_id", c.id))
			pool.Discard(s)
			return
		}
		if err := resetBackend(s, cfg.Backend.ResetQuery, 5*time.Second); err != nil {
			c.srv.log.Debug("backend not reused", zap.Uint64("client_id", c.id), zap.Error(err))
			pool.Discard(s)
			return
		}
		pool.Put(s, limits, time.Now())
	}
	if c.srv.loops != nil && !c.ssl && canLoop(c.raw) && canLoop(s.Conn) {
		if err := c.relayInLoop(s, after); err != nil {
			c.srv.log.Debug("session not handed to the event loop", zap.Uint64("client_id", c.id), zap.Error(err))
			pool.Discard(s)
			if c.terminating.Load() {
				// The server stopped between the client's ReadyForQuery and
				// the hand-off: the client is told why, as a session in a
				// relay is (nothing was relayed, so this is a boundary).
				c.raw.SetWriteDeadline(time.Now().Add(time.Second))
				c.raw.Write(terminationMessage)
			}
			return errSilentClose
		}
		handedOff = true // after retires the key
		return errHandedOff
	}
	// The relay runs on goroutines of its own and this one ends: the login
	// grew this goroutine's stack (TLS handshake, SCRAM) to sizes a relay
	// parked in a read never needs again, and a stack does not shrink below
	// four times what it uses. Fresh goroutines start small.
	tr := &trackedRelay{client: c.cc, backend: s.Conn, session: s, terminating: &c.terminating, metrics: c.srv.metrics,
		onDatabaseDDL: c.srv.databaseStatement(c.id, s.Key.Host, s.Key.Port)}
	tr.held, tr.heldErr = heldTLS(c.cc.Conn)
	tr.heldTaken = true
	handedOff = true // after retires the key
	go func() {
		idle := tr.run()
		after(idle, tr.keptState, tr.owe)
		c.finish()
	}()
	return errHandedOff
}

// errClientLeftWaiting: a client closed its connection while its login
// waited at max_backend_connections.
var errClientLeftWaiting error = auditReason("the client left while its login waited for a backend at max_backend_connections")

// auditReason is a session's end after authentication that is no refusal
// of the backend's: the audit log gives it as it is (see
// backend.RefusalReason).
type auditReason string

func (r auditReason) Error() string { return string(r) }

// AuditReason is the audit log's reason.
func (r auditReason) AuditReason() string { return string(r) }

// errHandedOff: the session went on in an event loop or on relay
// goroutines of its own, which finish the connection when the session ends.
var errHandedOff = errors.New("session handed to the event loop")

// relayInLoop hands the session to an event loop. The connection's
// goroutine ends; when the session ends, after runs on a goroutine of its
// own with the backend back in s.Conn when it may be reused, and then the
// connection is finished as handle would have finished it.
func (c *conn) relayInLoop(s *backend.Session, after func(idle, keptState bool, owe *owedAnswers)) error {
	var pending []byte
	if n := c.cc.r.Buffered(); n > 0 {
		p, _ := c.cc.r.Peek(n)
		pending = append([]byte(nil), p...)
	}
	c.cc.r = nil
	lp := c.srv.loops.pick()
	es := &evSession{lp: lp, cfd: -1, bfd: -1, session: s, metrics: c.srv.metrics}
	es.watch.onDDL = c.srv.databaseStatement(c.id, s.Key.Host, s.Key.Port)
	c.mu.Lock()
	if c.closed || c.terminating.Load() {
		c.mu.Unlock()
		return errors.New("connection closed")
	}
	cfd, err := detachFD(c.raw)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	bfd, err := detachFD(s.Conn)
	if err != nil {
		unix.Close(cfd)
		c.mu.Unlock()
		return err
	}
	es.cfd, es.bfd = cfd, bfd
	es.onEnd = func(r evResult) {
		idle := false
		if r.backendFD >= 0 {
			if nc, err := attachFD(r.backendFD); err == nil {
				s.Conn = nc
				idle = r.reusable
			}
		}
		after(idle, r.keptState, r.owe)
		c.finish()
	}
	c.ev = es
	c.mu.Unlock()
	lp.add(es, pending)
	return nil
}

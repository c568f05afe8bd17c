package pgwire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/snapshot"
)

// connectBackend logs in to the backend and takes over its socket.
func connectBackend(ctx context.Context, pc *pgconn.Config) (*pgconn.HijackedConn, error) {
	ctx, cancel := context.WithTimeout(ctx, pc.ConnectTimeout)
	defer cancel()
	pg, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, err
	}
	hc, err := pg.Hijack()
	if err != nil {
		pg.Close(ctx)
		return nil, err
	}
	return hc, nil
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
		return err
	}
	c.srv.log.Warn("backend unreachable", zap.Uint64("client_id", c.id), zap.String("host", t.Host),
		zap.Int("port", t.Port), zap.Error(err))
	return BackendUnreachable()
}

// cancelAddr is where CancelRequests for hc's backend are sent.
func cancelAddr(hc *pgconn.HijackedConn) (string, string) {
	if strings.HasPrefix(hc.Config.Host, "/") {
		return "unix", filepath.Join(hc.Config.Host, fmt.Sprintf(".s.PGSQL.%d", hc.Config.Port))
	}
	if a, ok := hc.Conn.RemoteAddr().(*net.TCPAddr); ok {
		return "tcp", a.String()
	}
	return "tcp", net.JoinHostPort(hc.Config.Host, fmt.Sprint(hc.Config.Port))
}

// startSession connects the backend, makes the client ready, and relays.
func (c *conn) startSession(snap *snapshot.Snapshot, sp *startupPacket, res *authResult, db string) error {
	t := backend.Route(snap.Config, res.name, res.user, res.password, db)
	params := make(map[string]string, len(sp.params))
	for _, p := range sp.params {
		params[p.name] = p.value
	}
	pc, err := backend.Config(snap.Config, t, params)
	if err != nil {
		return err
	}
	hc, err := connectBackend(c.ctx(), pc)
	if err != nil {
		return c.backendFailure(t, err)
	}
	if !c.setBackend(hc.Conn) {
		hc.Conn.Close()
		return errSilentClose
	}
	defer hc.Conn.Close()

	// Make the client ready as PostgreSQL would after AuthenticationOk:
	// the backend's ParameterStatus values, our BackendKeyData (the
	// client cancels through us), then ReadyForQuery.
	for name, value := range hc.ParameterStatuses {
		c.cc.send(&pgproto3.ParameterStatus{Name: name, Value: value})
	}
	// Anything the backend sent after its ReadyForQuery (a NOTICE, a
	// ParameterStatus) and pgconn already buffered is passed on, not lost.
	for hc.Frontend.ReadBufferLen() > 0 {
		m, err := hc.Frontend.Receive()
		if err != nil {
			return c.backendFailure(t, err)
		}
		if bm, ok := m.(pgproto3.BackendMessage); ok {
			c.cc.send(bm)
		}
	}
	network, addr := cancelAddr(hc)
	target := &cancelTarget{network: network, addr: addr, pid: hc.PID, secret: hc.SecretKey}
	pid := c.srv.cancels.register(target)
	defer c.srv.cancels.unregister(pid)
	c.cc.send(&pgproto3.BackendKeyData{ProcessID: pid, SecretKey: target.key[:]})
	c.cc.send(&pgproto3.ReadyForQuery{TxStatus: hc.TxStatus})
	if err := c.cc.flush(); err != nil {
		return err
	}
	// Authentication is over: no more deadline on the client socket.
	c.raw.SetDeadline(noDeadline)
	c.srv.log.Debug("session started", zap.Uint64("client_id", c.id), zap.String("role", t.Role), zap.String("database", t.Database))
	up, down := relay(c.cc, hc.Conn)
	c.srv.metrics.Relayed(up, down)
	return nil
}

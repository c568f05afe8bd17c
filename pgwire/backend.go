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

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/snapshot"
)

// backendTarget is where and as whom a session connects.
type backendTarget struct {
	host     string
	port     int
	database string
	role     string
	password string
}

// route applies [[databases]] and the user's role mapping.
func route(cfg *config.Config, res *authResult, db string) backendTarget {
	t := backendTarget{host: cfg.Backend.Host, port: cfg.Backend.Port, database: db, role: res.name}
	for _, d := range cfg.Databases {
		if d.Name == db {
			if d.BackendDBName != "" {
				t.database = d.BackendDBName
			}
			if d.Host != "" {
				t.host = d.Host
			}
			if d.Port != 0 {
				t.port = d.Port
			}
			break
		}
	}
	// Password: the user's own backend password, else the shared one, else
	// (passthrough) what the client typed.
	t.password = cfg.Backend.Password
	if u := res.user; u != nil {
		t.role = u.BackendRole()
		if u.BackendPassword != "" {
			t.password = u.BackendPassword
		}
	}
	if t.password == "" && cfg.Backend.Passthrough {
		t.password = res.password
	}
	return t
}

// backendConfig builds the pgconn configuration. The connection string
// carries only what pgconn must see while parsing (TLS settings make its
// fallback list); identity and parameters are set afterwards so that no
// client-supplied value is ever parsed as connection-string syntax.
func backendConfig(cfg *config.Config, t backendTarget, params []param) (*pgconn.Config, error) {
	b := &cfg.Backend
	kv := []string{
		"host=" + quoteConnValue(t.host),
		fmt.Sprintf("port=%d", t.port),
		"sslmode=" + quoteConnValue(b.SSLMode),
	}
	for k, v := range map[string]string{"sslrootcert": b.SSLRootCert, "sslcert": b.SSLCert, "sslkey": b.SSLKey} {
		if v != "" {
			kv = append(kv, k+"="+quoteConnValue(v))
		}
	}
	pc, err := pgconn.ParseConfig(strings.Join(kv, " "))
	if err != nil {
		return nil, err
	}
	pc.User = t.role
	pc.Password = t.password
	pc.Database = t.database
	pc.ConnectTimeout = b.ConnectTimeout.Duration
	pc.RuntimeParams = make(map[string]string, len(params))
	for _, p := range params {
		if p.name != "user" && p.name != "database" {
			pc.RuntimeParams[p.name] = p.value
		}
	}
	return pc, nil
}

func quoteConnValue(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

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

// isBackendError reports whether err came from the backend server itself.
func isBackendError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
}

// backendFailure turns a failed backend connect into what the client sees:
// the backend's own error when it answered, 08006 when it could not be
// reached.
func (c *conn) backendFailure(t backendTarget, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		c.srv.log.Info("backend refused session", zap.Uint64("client_id", c.id), zap.String("role", t.role),
			zap.String("database", t.database), zap.String("sqlstate", pe.Code), zap.String("message", pe.Message))
		return err
	}
	c.srv.log.Warn("backend unreachable", zap.Uint64("client_id", c.id), zap.String("host", t.host),
		zap.Int("port", t.port), zap.Error(err))
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
	t := route(snap.Config, res, db)
	pc, err := backendConfig(snap.Config, t, sp.params)
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
	c.srv.log.Debug("session started", zap.Uint64("client_id", c.id), zap.String("role", t.role), zap.String("database", t.database))
	relay(c.cc, hc.Conn)
	return nil
}

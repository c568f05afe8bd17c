package pgwire

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	admincmd "github.com/pgwarden/pgwarden/admin"
	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/metrics"
	"github.com/pgwarden/pgwarden/snapshot"
)

// adminConsole serves server.admin_database to users holding role admin:
// the simple query protocol, answered with ordinary result sets so psql
// prints tables. Every command is authorised by that role check.
func (c *conn) adminConsole(snap *snapshot.Snapshot, id *authcore.Identity) error {
	if id.User == nil || !id.User.HasRole("admin") {
		return AdminDenied()
	}
	for _, p := range [][2]string{{"server_version", "15.0 (pgwarden)"}, {"server_encoding", "UTF8"}, {"client_encoding", "UTF8"},
		{"DateStyle", "ISO, MDY"}, {"integer_datetimes", "on"}, {"standard_conforming_strings", "on"}, {"application_name", ""}} {
		c.cc.send(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	var key [8]byte
	rand.Read(key[:])
	c.cc.send(&pgproto3.BackendKeyData{ProcessID: binary.BigEndian.Uint32(key[:4]) & 0x7fffffff, SecretKey: key[4:]})
	c.cc.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := c.cc.flush(); err != nil {
		return err
	}
	c.raw.SetDeadline(noDeadline)
	a := &admin{c: c, user: id.User.Name}
	skipToSync := false
	for {
		typ, body, err := c.cc.readMessage(64 << 10)
		if err != nil {
			return errSilentClose
		}
		switch typ {
		case 'X':
			return errSilentClose
		case 'Q':
			q, _, _ := cutNul(body)
			a.run(strings.TrimSpace(q))
			c.cc.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case 'S':
			skipToSync = false
			c.cc.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case 'P', 'B', 'D', 'E', 'C', 'H':
			if !skipToSync {
				a.fail(codeFeatureNotSupported, "the admin console speaks the simple query protocol only")
				skipToSync = true
			}
		default:
			return ProtocolViolation("unexpected message type %q on the admin console", typ)
		}
		if err := c.cc.flush(); err != nil {
			return errSilentClose
		}
	}
}

type admin struct {
	c    *conn
	user string
}

func (a *admin) fail(code, msg string) {
	a.c.cc.send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg})
}

// rows sends a result set of text columns.
func (a *admin) rows(tag string, cols []string, rows [][]string) {
	fields := make([]pgproto3.FieldDescription, len(cols))
	for i, col := range cols {
		fields[i] = pgproto3.FieldDescription{Name: []byte(col), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}
	}
	a.c.cc.send(&pgproto3.RowDescription{Fields: fields})
	for _, r := range rows {
		vals := make([][]byte, len(r))
		for i, v := range r {
			vals[i] = []byte(v)
		}
		a.c.cc.send(&pgproto3.DataRow{Values: vals})
	}
	a.c.cc.send(&pgproto3.CommandComplete{CommandTag: []byte(fmt.Sprintf("%s %d", tag, len(rows)))})
}

func (a *admin) done(tag string) {
	a.c.cc.send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
}

// run executes one command line of package admin's language.
func (a *admin) run(q string) {
	if admincmd.Empty(q) {
		a.c.cc.send(&pgproto3.EmptyQueryResponse{})
		return
	}
	a.c.srv.log.Info("admin command", zap.String("user", a.user), zap.Uint64("client_id", a.c.id), zap.String("command", admincmd.Verb(q)))
	if err := admincmd.Run(q, adminEnv{a.c}, a); err != nil {
		var ae *admincmd.Error
		if errors.As(err, &ae) {
			a.fail(ae.Code, ae.Msg)
			return
		}
		// The text of an internal error stays in the log; the client
		// gets an id to find it there.
		var b [6]byte
		rand.Read(b[:])
		rid := hex.EncodeToString(b[:])
		a.c.srv.log.Error("admin command failed", zap.String("request_id", rid), zap.String("user", a.user), zap.Error(err))
		a.fail(codeInternalError, fmt.Sprintf("internal error (request id %s): the server log says what happened", rid))
	}
}

// Rows implements admincmd.Output.
func (a *admin) Rows(tag string, cols []string, rows [][]string) { a.rows(tag, cols, rows) }

// Done implements admincmd.Output.
func (a *admin) Done(tag string) { a.done(tag) }

// adminEnv is the server as the admin console acts on it.
type adminEnv struct{ c *conn }

var _ admincmd.Env = adminEnv{}

func (e adminEnv) Snapshot() *snapshot.Snapshot { return e.c.srv.state.Current() }
func (e adminEnv) UpdateUsers(change func([]*authcore.User) ([]*authcore.User, error)) error {
	_, err := e.c.srv.state.UpdateUsers(change)
	return err
}
func (e adminEnv) Reload() error             { return e.c.srv.reload() }
func (e adminEnv) Clients() [][]string       { return e.c.srv.clients() }
func (e adminEnv) Kill(id uint64) bool       { return e.c.srv.kill(id) }
func (e adminEnv) EndSessionsOf(user string) { e.c.srv.killUser(user, e.c) }
func (e adminEnv) Pools() backend.Stats      { return e.c.srv.pool.Stats() }
func (e adminEnv) Version() string           { return e.c.srv.version }
func (e adminEnv) PeerReachable(address string) bool {
	c, err := net.DialTimeout("tcp", address, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
func (e adminEnv) Samples() []metrics.Sample {
	if e.c.srv.metrics == nil {
		return nil
	}
	return e.c.srv.metrics.Samples()
}

// Package backend says where and as whom a proven client connects to
// PostgreSQL: database routing, role mapping, the password to present, and
// the pgconn configuration with the [backend] TLS settings. Both frontends
// use it.
package backend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/internal/sockpeek"
)

// Target is one backend login.
type Target struct {
	Host     string
	Port     int
	Database string
	Role     string
	Password string
	// SCRAM, when there is no Password, logs in with a proven client's
	// SCRAM keys ([backend] passthrough after a SCRAM login).
	SCRAM *authcore.SCRAMKeys
	// TLS is the [backend] TLS settings' digest (config.Backend.TLSDigest)
	// a login under this target uses.
	TLS string
}

// MaxNameBytes is the longest role or database name PostgreSQL keeps
// (NAMEDATALEN - 1). It cuts a longer name in the startup packet to its
// first 63 bytes and logs in to that.
const MaxNameBytes = 63

// NameTooLongError refuses a backend login whose role or database name
// PostgreSQL would cut: the HBA rules judged the whole name, and the cut
// one may be a name a rule refuses (a client asking for a rejected
// 63-byte database's name with "x" added got into that database).
type NameTooLongError struct {
	What string // "role" or "database"
	Len  int
}

func (e *NameTooLongError) Error() string {
	return fmt.Sprintf("the backend %s name is %d bytes, over PostgreSQL's limit of %d: refused rather than cut to a name the HBA rules did not judge", e.What, e.Len, MaxNameBytes)
}

// SQLState is PostgreSQL's name_too_long.
func (e *NameTooLongError) SQLState() string { return "42622" }

// ClientDetail is empty: the message says it all.
func (e *NameTooLongError) ClientDetail() string { return "" }

// RoutedDatabaseError refuses a name that [[databases]] does not list but
// that is an entry's backend database on the same server: it would reach
// that entry's database under a name the HBA rules were not written for.
// With an entry app -> app_prod, rules refusing "app" did not stop a
// client asking for "app_prod" by name.
type RoutedDatabaseError struct {
	Name  string // what the client asked for
	Entry string // the [[databases]] name that reaches it
}

// Error is what the client is told: as the backend would say it of a
// database that does not exist, since for clients it does not under that
// name.
func (e *RoutedDatabaseError) Error() string {
	return fmt.Sprintf("database %q does not exist", e.Name)
}

// SQLState is PostgreSQL's invalid_catalog_name.
func (e *RoutedDatabaseError) SQLState() string { return "3D000" }

// ClientDetail says why without naming the entry.
func (e *RoutedDatabaseError) ClientDetail() string {
	return "pgwarden reaches this backend database only by the name its [[databases]] entry gives it."
}

// AuditReason names the entry, for the operator.
func (e *RoutedDatabaseError) AuditReason() string {
	return fmt.Sprintf("database %q is the backend database of [[databases]] %q, which clients reach by that name only", e.Name, e.Entry)
}

// RefusalReason is what the audit log says of a session refused at or
// after the backend login: an error's own AuditReason when it has one.
func RefusalReason(err error) string {
	var own interface{ AuditReason() string }
	if errors.As(err, &own) {
		return own.AuditReason()
	}
	return "backend refused the session: " + err.Error()
}

// RouteRefusal is an error of Route: the session is refused before any
// backend login, with this SQLSTATE, message (Error) and detail.
type RouteRefusal interface {
	error
	SQLState() string
	ClientDetail() string
}

// check refuses names PostgreSQL would cut.
func (t Target) check() error {
	if len(t.Role) > MaxNameBytes {
		return &NameTooLongError{What: "role", Len: len(t.Role)}
	}
	if len(t.Database) > MaxNameBytes {
		return &NameTooLongError{What: "database", Len: len(t.Database)}
	}
	return nil
}

// Credentials are what a client proved with that [backend] passthrough can
// log in to the backend with: its cleartext password, or the keys of its
// SCRAM exchange.
type Credentials struct {
	Password string
	SCRAM    *authcore.SCRAMKeys
}

// Route applies [[databases]] to db and maps the proven user (nil for a
// trusted name without a users-file entry) to its backend role and password:
// the user's backend_password, else [backend] password, else, when
// passthrough is on, the client's password or SCRAM keys. A role or database name longer than
// PostgreSQL keeps is a *NameTooLongError; an unlisted name that reaches a
// listed entry's database is a *RoutedDatabaseError.
func Route(cfg *config.Config, name string, u *authcore.User, client Credentials, db string) (Target, error) {
	t, listed := route(cfg, name, u, client, db)
	if !listed {
		if entry := routedTo(cfg, t); entry != "" {
			return Target{}, &RoutedDatabaseError{Name: db, Entry: entry}
		}
	}
	return t, t.check()
}

// routedTo is the name of a [[databases]] entry that reaches t's server and
// database, or "". Servers are compared by port and by sameHost, which
// errs towards "the same": a wrong "same" refuses a name the operator can
// list, a wrong "different" lets a name past the entry's rules.
func routedTo(cfg *config.Config, t Target) string {
	for _, d := range cfg.Databases {
		e := entryTarget(cfg, d)
		if e.Port == t.Port && e.Database == t.Database && (sameHost(e.Host, t.Host) || d.DefaultServer && sameHost(t.Host, cfg.Backend.Host)) {
			return d.Name
		}
	}
	return ""
}

// entryTarget is the server and database a [[databases]] entry reaches.
func entryTarget(cfg *config.Config, d config.Database) Target {
	e := Target{Host: cfg.Backend.Host, Port: cfg.Backend.Port, Database: d.Name}
	if d.BackendDBName != "" {
		e.Database = d.BackendDBName
	}
	if d.Host != "" {
		e.Host = d.Host
	}
	if d.Port != 0 {
		e.Port = d.Port
	}
	return e
}

// sameHost says whether two backend hosts may be one server: written
// alike (DNS names in any case, with or without the root's dot), one IP
// address written two ways (::ffff:10.0.0.5 and 10.0.0.5), or both this
// machine (localhost, a loopback address, a unix socket folder: one
// PostgreSQL commonly listens on all of them). Two DNS names of one
// address are recognised when the configuration loads (markDefaultServer),
// not here: that would take a lookup per session.
func sameHost(a, b string) bool {
	return config.HostKey(a) == config.HostKey(b)
}

// route maps db and the user; listed says whether [[databases]] names db.
func route(cfg *config.Config, name string, u *authcore.User, client Credentials, db string) (t Target, listed bool) {
	t = Target{Host: cfg.Backend.Host, Port: cfg.Backend.Port, Database: db}
	for _, d := range cfg.Databases {
		if d.Name == db {
			t, listed = entryTarget(cfg, d), true
			break
		}
	}
	t.Role = name
	t.Password, t.TLS = cfg.Backend.Password, cfg.Backend.TLSDigest
	if u != nil {
		t.Role = u.BackendRole()
		if u.BackendPassword != "" {
			t.Password = u.BackendPassword
		}
	}
	if t.Password == "" && cfg.Backend.Passthrough {
		t.Password = client.Password
		if t.Password == "" {
			t.SCRAM = client.SCRAM
		}
	}
	return t, listed
}

// Config builds the pgconn configuration for t from the configuration
// alone. The connection string carries only what pgconn must see while
// parsing (its TLS fallbacks); identity and runtime parameters are set
// afterwards, so no client-supplied value is ever parsed as
// connection-string syntax. libpq's defaults from the home folder
// (~/.postgresql/postgresql.crt, root.crt, ~/.pgpass) are written over with
// the configured values, empty when unset, and libpq's environment variables
// are ignored (IgnoreLibpqEnvironment): what pgwarden connects to, and with
// which key, is what the config says.
func Config(cfg *config.Config, t Target, params map[string]string) (*pgconn.Config, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	b := &cfg.Backend
	kv := []string{
		"host=" + quote(t.Host),
		fmt.Sprintf("port=%d", t.Port),
		"sslmode=" + quote(b.SSLMode),
		"sslrootcert=" + quote(b.SSLRootCert),
		"sslcert=" + quote(b.SSLCert),
		"sslkey=" + quote(b.SSLKey),
		"require_auth=" + quote(b.RequireAuth),
		"channel_binding=" + quote(b.ChannelBinding),
		"passfile=''",
		// A placeholder: the role is set below; it spares pgconn looking
		// up the OS user.
		"user=pgwarden",
	}
	pc, err := pgconn.ParseConfig(strings.Join(kv, " "))
	if err != nil {
		return nil, err
	}
	pc.User = t.Role
	pc.Password = t.Password
	if t.Password == "" && t.SCRAM != nil {
		// pgconn sees this login as a backend that let it in at once,
		// which a require_auth of methods, and channel_binding
		// "require", refuse: the pass-through conn applies both to the
		// exchange it runs itself.
		ra, err := config.ParseRequireAuth(b.RequireAuth)
		if err != nil {
			return nil, err
		}
		pc.RequireAuth, pc.ChannelBinding = "", "prefer"
		pc.AfterNetConnect = scramPassthrough(t.SCRAM, t.Role, ra, b.ChannelBinding)
	}
	pc.Database = t.Database
	pc.ConnectTimeout = b.ConnectTimeout.Duration
	pc.RuntimeParams = make(map[string]string, len(params))
	for k, v := range params {
		if k != "user" && k != "database" {
			pc.RuntimeParams[k] = v
		}
	}
	return pc, nil
}

// libpqEnvironment are the variables pgconn (like libpq) reads as defaults
// for every connection.
var libpqEnvironment = []string{"PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGPASSFILE", "PGAPPNAME",
	"PGCONNECT_TIMEOUT", "PGSSLMODE", "PGSSLKEY", "PGSSLCERT", "PGSSLCERTMODE", "PGSSLSNI", "PGSSLROOTCERT", "PGSSLPASSWORD",
	"PGSSLNEGOTIATION", "PGTARGETSESSIONATTRS", "PGSERVICE", "PGSERVICEFILE", "PGTZ", "PGOPTIONS", "PGMINPROTOCOLVERSION",
	"PGMAXPROTOCOLVERSION", "PGCHANNELBINDING", "PGREQUIREAUTH", "PGSSLCRL", "PGSSLCRLDIR", "PGSSLMINPROTOCOLVERSION",
	"PGSSLMAXPROTOCOLVERSION", "PGGSSENCMODE", "PGKRBSRVNAME", "PGGSSLIB", "PGREQUIREPEER", "PGLOADBALANCEHOSTS",
	"PGSYSCONFDIR", "PGLOCALEDIR", "PGCLIENTENCODING", "PGDATESTYLE", "PGGEQO"}

// IgnoreLibpqEnvironment removes libpq's variables from this process's
// environment, so that no backend connection (wire, HTTP, auth_query)
// takes a host, key, service or option from them. It returns the names it
// removed, for the log. The server calls it once at start.
func IgnoreLibpqEnvironment() []string {
	var removed []string
	for _, name := range libpqEnvironment {
		if _, ok := os.LookupEnv(name); ok {
			os.Unsetenv(name)
			removed = append(removed, name)
		}
	}
	return removed
}

// Validate builds the backend connection configuration once, so that
// broken backend TLS settings (a missing or unreadable sslrootcert, an
// sslcert without its key) are reported when the configuration loads
// (pgwarden check, serve, reload), not by the first client.
//
// It also sets cfg.Backend.TLSDigest: a reload that changes sslmode or a
// certificate or key (also in place, under the same file name) must reach
// every backend login from then on, not only new ones. Backends parked for
// reuse, and the HTTP pools, are kept apart by it: before, a reload from
// sslmode = "disable" to "require" left the wire reusing plaintext
// backends for up to max_lifetime, and a busy HTTP pool opening new
// plaintext connections for as long as it was in use.
func Validate(cfg *config.Config) error {
	if _, err := Config(cfg, Target{Host: cfg.Backend.Host, Port: cfg.Backend.Port, Role: "pgwarden"}, nil); err != nil {
		return &config.Error{File: cfg.Path, Key: "backend", Msg: "the TLS settings (sslmode, sslrootcert, sslcert, sslkey) do not work: " + err.Error()}
	}
	cfg.Backend.TLSDigest = tlsDigest(&cfg.Backend)
	markDefaultServer(cfg, defaultResolver)
	return nil
}

// tlsDigest hashes the backend TLS settings, with require_auth and
// channel_binding (what the backend must prove of itself), and the
// contents of the files they name (which Config has just read
// successfully).
func tlsDigest(b *config.Backend) string {
	h := sha256.New()
	for _, s := range []string{b.SSLMode, b.SSLRootCert, b.SSLCert, b.SSLKey, b.RequireAuth, b.ChannelBinding} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	for _, path := range []string{b.SSLRootCert, b.SSLCert, b.SSLKey} {
		if path != "" {
			data, _ := os.ReadFile(path)
			sum := sha256.Sum256(data)
			h.Write(sum[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// IsServerError reports whether err is an error the backend itself sent.
func IsServerError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
}

// Refusal is how a client is told that the backend refused pgwarden's own
// login, after pgwarden had accepted the client's credentials.
type Refusal struct {
	Code, Message, Detail, Hint string
}

// LoginRefusal rewrites a backend's refusal of pgwarden's login that would
// read as the client's own failure: over TCP with SCRAM, PostgreSQL hides a
// missing role or a wrong backend password behind "password authentication
// failed for user ...", and a client whose password pgwarden just accepted
// must not be told its password failed. The backend's SQLSTATE stays, its
// message becomes the DETAIL, and the HINT says what to configure. Any other
// backend error (role "x" does not exist, database "y" does not exist, too
// many connections) is clear already: nil, pass it on as it is.
func LoginRefusal(pe *pgconn.PgError, role string) *Refusal {
	if pe.Code != "28P01" {
		return nil
	}
	return &Refusal{
		Code:    pe.Code,
		Message: fmt.Sprintf("the backend refused pgwarden's login as role %q", role),
		Detail:  "The backend said: " + pe.Message,
		Hint: "pgwarden accepted this client's credentials; the backend did not accept pgwarden's. " +
			"Set the user's backend_password (or [backend] password), or backend_user to a role the backend knows.",
	}
}

// PoolConfig is the pgxpool configuration of a pool of t's logins, built
// from the configuration alone like every backend connection (Config).
func PoolConfig(cfg *config.Config, t Target, applicationName string) (*pgxpool.Config, error) {
	pc, err := Config(cfg, t, map[string]string{"application_name": applicationName})
	if err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	pcfg.ConnConfig.Config = *pc
	pcfg.PrepareConn = func(ctx context.Context, c *pgx.Conn) (bool, error) { return IdleConnAlive(ctx, c.PgConn()), nil }
	return pcfg, nil
}

// IdleConnAlive says whether a pooled connection about to be handed out
// is still the backend's: a backend terminated while the connection sat
// idle (a restart, a failover, pg_terminate_backend, an idle timeout)
// left its FATAL and its close in the socket, and the next request sent
// there would be answered with that error. One look, no round trip; a
// pool takes another connection when it is false.
//
// The look is true only of a socket pgconn itself does not read: after a
// write that took over 15 ms, pgconn's background reader stays blocked in
// a read of the socket until the backend sends something, and takes the
// FATAL in before any look could see it. SyncConn is free when no such
// reader is left (nearly always) and otherwise asks the backend a round
// trip's question, which ends the reader, and fails when the backend is
// gone.
func IdleConnAlive(ctx context.Context, pc *pgconn.PgConn) bool {
	if err := pc.SyncConn(ctx); err != nil {
		return false
	}
	st := sockpeek.Conn(pc.Conn())
	return st != sockpeek.Pending && st != sockpeek.Closed
}

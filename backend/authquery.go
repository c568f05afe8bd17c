package backend

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
)

// AuthQuery is the [auth_query] credential store: a query run in the
// backend database on a small pool of its own, as the configured role.
// Parameters are always bound, never interpolated, and no client's startup
// parameters ever reach these connections (a client's search_path cannot
// substitute a table of its own for pg_shadow).
type AuthQuery struct {
	cfg       config.AuthQuery
	pool      *pgxpool.Pool
	key       string
	grace     time.Duration
	closeOnce sync.Once
}

var _ authcore.ExternalCredentials = (*AuthQuery)(nil)

// authQueryTimeout bounds one lookup.
const authQueryTimeout = 5 * time.Second

// authQueryPools are the pools of the loads in force, by the settings they
// connect with: a reload that keeps those settings keeps the pool. Each
// load used to make a pool of its own and close the one before at once,
// so a login that a reload overtook between reading its snapshot and
// running its lookup found the pool closed, and the right password was
// refused (28P01); with reloads a few milliseconds apart, as the
// PostgreSQL store makes them when users change quickly, every login
// failed. A pool no load holds any more is closed once the logins that
// may still hold it are over (see Close).
var authQueryPools = struct {
	sync.Mutex
	m map[string]*sharedAuthQueryPool
}{m: map[string]*sharedAuthQueryPool{}}

type sharedAuthQueryPool struct {
	pool *pgxpool.Pool
	refs int
}

// NewAuthQuery prepares the pool, or takes the one a load before this
// made with the same settings; it connects on first use. Close gives it
// back.
func NewAuthQuery(cfg *config.Config) (*AuthQuery, error) {
	aq := cfg.AuthQuery
	t := Target{Host: cfg.Backend.Host, Port: cfg.Backend.Port, Database: aq.Database, Role: aq.User, Password: authQueryPassword(cfg)}
	// The TLS digest covers the TLS settings and their files' contents.
	key := fmt.Sprintf("%q %d %q %q %q %q %s", t.Host, t.Port, t.Database, t.Role, t.Password, cfg.Backend.TLSDigest, cfg.Backend.ConnectTimeout.Duration)
	q := &AuthQuery{cfg: *aq, key: key, grace: cfg.Server.AuthTimeout.Duration + authQueryTimeout}
	authQueryPools.Lock()
	defer authQueryPools.Unlock()
	if sp := authQueryPools.m[key]; sp != nil {
		sp.refs++
		q.pool = sp.pool
		return q, nil
	}
	pcfg, err := PoolConfig(cfg, t, "pgwarden-auth-query")
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns = config.AuthQueryPoolConns
	pcfg.MaxConnIdleTime = time.Minute
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return nil, err
	}
	authQueryPools.m[key] = &sharedAuthQueryPool{pool: pool, refs: 1}
	q.pool = pool
	return q, nil
}

// authQueryPassword is [auth_query] password, else [backend] password, as
// for any backend role without a password of its own. Before December
// 2026 the fallback was documented but not made: with only [backend]
// password set, every lookup failed the backend's SCRAM login, and every
// name looked unknown.
func authQueryPassword(cfg *config.Config) string {
	if cfg.AuthQuery.Password != "" {
		return cfg.AuthQuery.Password
	}
	return cfg.Backend.Password
}

// User runs the lookup query for name: its first column is the stored
// hash, and an optional second one the time the password stops being valid
// (PostgreSQL's VALID UNTIL: NULL or infinity is never), which is checked
// after the password, as for users of the users file. No row or a NULL
// hash means the name is unknown here.
func (q *AuthQuery) User(ctx context.Context, name string) (*authcore.User, error) {
	if q.cfg.Mode != "lookup" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, authQueryTimeout)
	defer cancel()
	rows, err := q.pool.Query(ctx, q.cfg.Query, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		hash       *string
		validUntil pgtype.Timestamptz
	)
	if !rows.Next() {
		rows.Close()
		return nil, rows.Err()
	}
	switch n := len(rows.FieldDescriptions()); {
	case n == 1:
		err = rows.Scan(&hash)
	case n == 2:
		err = rows.Scan(&hash, &validUntil)
	default:
		return nil, fmt.Errorf("the lookup query returned %d columns; it must return the hash and, optionally, the time it stops being valid", n)
	}
	if err != nil {
		return nil, err
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if hash == nil || *hash == "" {
		return nil, nil
	}
	var until *time.Time
	switch {
	case !validUntil.Valid || validUntil.InfinityModifier == pgtype.Infinity:
	case validUntil.InfinityModifier == pgtype.NegativeInfinity:
		until = &time.Time{} // long past
	default:
		until = &validUntil.Time
	}
	u, err := authcore.NewExternalUser(name, *hash, until)
	if err != nil {
		// An MD5 or plain password in pg_authid: not a hash pgwarden
		// accepts. The user fails like an unknown one.
		return nil, nil
	}
	return u, nil
}

// Verify runs the verify query with the user and password: a row or more
// means valid.
func (q *AuthQuery) Verify(ctx context.Context, name, password string) (bool, bool, error) {
	if q.cfg.Mode != "verify" {
		return false, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, authQueryTimeout)
	defer cancel()
	rows, err := q.pool.Query(ctx, q.cfg.Query, name, password)
	if err != nil {
		return false, true, err
	}
	defer rows.Close()
	found := rows.Next()
	rows.Close()
	return found, true, rows.Err()
}

// membershipQuery lists the roles $1 is a member of, directly or through
// other roles, itself first, as PostgreSQL's HBA reads "+role" and
// "samerole" (is_member_of_role_nosuper: every membership counts, with or
// without INHERIT, and a superuser is a member only of what it was
// granted). Any role may read pg_roles and pg_auth_members.
const membershipQuery = `WITH RECURSIVE m(oid) AS (
 SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1
 UNION
 SELECT a.roleid FROM pg_catalog.pg_auth_members a JOIN m ON a.member = m.oid)
SELECT r.rolname::text FROM m JOIN pg_catalog.pg_roles r ON r.oid = m.oid`

// Roles returns the PostgreSQL roles name is a member of, for the HBA
// rules: a name found through auth_query logs in to the backend as the
// role of that name, in either mode. A name that is no role holds none.
func (q *AuthQuery) Roles(ctx context.Context, name string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, authQueryTimeout)
	defer cancel()
	rows, err := q.pool.Query(ctx, membershipQuery, name)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Close gives the pool back when the load that made q is retired. The
// last load to give a pool back closes it after grace (auth_timeout and
// one lookup's time): logins judged by that load may still be running, and
// they keep their pool until they are over.
func (q *AuthQuery) Close() {
	q.closeOnce.Do(func() {
		authQueryPools.Lock()
		defer authQueryPools.Unlock()
		sp := authQueryPools.m[q.key]
		if sp == nil || sp.pool != q.pool {
			return
		}
		if sp.refs--; sp.refs == 0 {
			delete(authQueryPools.m, q.key)
			time.AfterFunc(q.grace, sp.pool.Close)
		}
	})
}

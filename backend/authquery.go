package backend

import (
	"context"
	"fmt"
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
	cfg  config.AuthQuery
	pool *pgxpool.Pool
}

var _ authcore.ExternalCredentials = (*AuthQuery)(nil)

// authQueryTimeout bounds one lookup.
const authQueryTimeout = 5 * time.Second

// NewAuthQuery prepares the pool; it connects on first use.
func NewAuthQuery(cfg *config.Config) (*AuthQuery, error) {
	aq := cfg.AuthQuery
	t := Target{Host: cfg.Backend.Host, Port: cfg.Backend.Port, Database: aq.Database, Role: aq.User, Password: authQueryPassword(cfg)}
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
	return &AuthQuery{cfg: *aq, pool: pool}, nil
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

// Close closes the pool.
func (q *AuthQuery) Close() { q.pool.Close() }

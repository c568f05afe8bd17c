package backend

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
)

// SettingsQuery reads what a backend applied at login that a later change
// in the catalog would make a fresh login apply differently, as one
// string: whether the login role may still log in to the database
// (LOGIN, VALID UNTIL, the database's ALLOW_CONNECTIONS and the role's
// CONNECT privilege on it), then the settings of ALTER ROLE ... SET and
// ALTER DATABASE ... SET that apply to it. A backend checks the first at
// login only and applies the second once, at login; DISCARD ALL resets to
// those values, not to what the catalog says now. So a backend kept for
// reuse reads this when it starts and again before it serves someone new:
// when the answer differs, the next client would not get what a fresh
// session gets (or would get in where PostgreSQL now refuses), and the
// backend is closed instead; a fresh login then meets PostgreSQL's own
// checks. Any user may read pg_roles, pg_database and pg_db_role_setting.
// A dropped role or database answers no row (an error to the caller).
const SettingsQuery = settingsColumns + settingsFrom + settingsWhere

const (
	settingsColumns = `SELECT CASE WHEN r.rolcanlogin AND (r.rolvaliduntil IS NULL OR r.rolvaliduntil > pg_catalog.now())
 AND d.datallowconn AND pg_catalog.has_database_privilege(d.oid, 'CONNECT') THEN 'login:' ELSE 'no login:' END ||
 coalesce((SELECT string_agg(s.setdatabase::text || ':' || s.setrole::text || ':' ||
 pg_catalog.array_to_string(s.setconfig, E'\x01'), E'\x02' ORDER BY s.setdatabase, s.setrole)
 FROM pg_catalog.pg_db_role_setting s WHERE s.setdatabase IN (0, d.oid) AND s.setrole IN (0, r.oid)), '')`
	settingsFrom = `
 FROM pg_catalog.pg_roles r, pg_catalog.pg_database d`
	settingsWhere = `
 WHERE r.rolname = session_user AND d.datname = pg_catalog.current_database()`
)

// SettingsQueryReseeding is SettingsQuery that also seeds the backend's
// random() afresh (see ReseedQuery), for the check a parked backend gets
// before it is handed out: one statement does both.
func SettingsQueryReseeding() string {
	return settingsColumns + settingsFrom + ", pg_catalog.setseed(" + randomSeed() + ") seed" + settingsWhere
}

// ReseedQuery seeds the backend's random() with a secret seed. DISCARD ALL
// leaves random()'s generator as it is, so a client could fix what the
// next client of its backend draws (SELECT setseed(0) before it leaves),
// or read the generator's state from its own draws and work out what the
// previous client drew: the generator (xoshiro128**) is not
// cryptographic. A fresh backend seeds it from a strong random source; a
// shared one gets a seed from pgwarden's before each new wire client, and
// before an HTTP request of another user than the one it served last.
// (setseed takes about 2^53 distinct seeds: enough that nobody can find
// which one a backend got from what another client can see.)
func ReseedQuery() string {
	return "SELECT pg_catalog.setseed(" + randomSeed() + ")"
}

// randomSeed is a uniformly random argument of setseed, in [-1, 1), as
// exact SQL text.
func randomSeed() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	f := float64(binary.BigEndian.Uint64(b[:])>>11)/(1<<52) - 1
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// ReadSettings runs SettingsQuery on a backend that is still pgconn's.
func ReadSettings(ctx context.Context, pg *pgconn.PgConn) (string, error) {
	res := pg.ExecParams(ctx, SettingsQuery, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return "", res.Err
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return "", errors.New("unexpected answer to the settings query")
	}
	return string(res.Rows[0][0]), nil
}

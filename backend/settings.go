package backend

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// SettingsQuery reads the settings of ALTER ROLE ... SET and ALTER DATABASE
// ... SET that apply to the session's login role in its database, as one
// string. A backend applies them once, at login; DISCARD ALL resets to them,
// not to what the catalog says now. So a backend kept for reuse reads them
// when it starts and again at each reset: when they differ, the next client
// would not see what a fresh session sees, and the backend is closed
// instead. Any user may read pg_db_role_setting.
const SettingsQuery = `SELECT coalesce(string_agg(s.setdatabase::text || ':' || s.setrole::text || ':' ||
 pg_catalog.array_to_string(s.setconfig, E'\x01'), E'\x02' ORDER BY s.setdatabase, s.setrole), '')
 FROM pg_catalog.pg_db_role_setting s
 WHERE s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()))
 AND s.setrole IN (0, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user))`

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

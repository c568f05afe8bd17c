package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/config"
)

// Channel is the NOTIFY channel of user changes; the payload names the
// users changed. ThrottleChannel carries the throttle's failures and
// successes between instances.
const (
	Channel         = "pgwarden_users"
	ThrottleChannel = "pgwarden_throttle"
)

// migrations are the schema's versions, in order; migration i makes
// version i+1. They only ever grow: a released migration never changes.
var migrations = []string{
	`CREATE TABLE pgwarden.users (
		name       text PRIMARY KEY,
		entry      text NOT NULL, -- the user's [[user]] block, as in a users file
		updated_at timestamptz NOT NULL DEFAULT now()
	)`,
	`CREATE TABLE pgwarden.settings (
		key   text PRIMARY KEY, -- form_key, setup_token
		value text NOT NULL
	);
	CREATE TABLE pgwarden.sessions (
		id_hash    bytea PRIMARY KEY, -- SHA-256 of the session id: the table never holds a usable id
		user_name  text NOT NULL,
		csrf       text NOT NULL,
		cred       bytea NOT NULL,
		created    timestamptz NOT NULL,
		last_seen  timestamptz NOT NULL
	);
	CREATE INDEX sessions_user ON pgwarden.sessions (user_name)`,
}

// SchemaVersion is the schema this binary reads and writes.
var SchemaVersion = len(migrations)

// ErrSchema is a schema that is not the one this binary knows.
var ErrSchema = errors.New("the pgwarden schema is not this binary's")

// timeout bounds each store operation.
const timeout = 10 * time.Second

// Postgres is the PostgreSQL store.
type Postgres struct {
	pool  *pgxpool.Pool
	where string
	cfg   *config.Config
}

// connConfig is the store's connection: [store], with host, port and
// sslmode defaulting to [backend]'s, built like every backend connection.
func connConfig(cfg *config.Config) (*pgxpool.Config, error) {
	c := *cfg
	st := cfg.Store
	t := backend.Target{Host: cfg.Backend.Host, Port: cfg.Backend.Port, Database: st.Database, Role: st.User, Password: st.Password}
	if st.Host != "" {
		t.Host = st.Host
	}
	if st.Port != 0 {
		t.Port = st.Port
	}
	if st.SSLMode != "" {
		c.Backend.SSLMode = st.SSLMode
	}
	pcfg, err := backend.PoolConfig(&c, t, "pgwarden-store")
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns = config.StorePoolConns
	pcfg.MaxConnIdleTime = time.Minute
	return pcfg, nil
}

func where(pcfg *pgxpool.Config) string {
	return fmt.Sprintf("the PostgreSQL store (%s@%s:%d/%s)", pcfg.ConnConfig.User, pcfg.ConnConfig.Host, pcfg.ConnConfig.Port, pcfg.ConnConfig.Database)
}

// OpenPostgres connects and checks the schema's version.
func OpenPostgres(ctx context.Context, cfg *config.Config) (*Postgres, error) {
	pcfg, err := connConfig(cfg)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, err
	}
	p := &Postgres{pool: pool, where: where(pcfg), cfg: cfg}
	v, err := p.version(ctx)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("%s: %w", p.where, err)
	}
	switch {
	case v < SchemaVersion:
		pool.Close()
		return nil, fmt.Errorf("%s: schema version %d, this binary needs %d: %w; run `pgwarden store init -c %s` to migrate it",
			p.where, v, SchemaVersion, ErrSchema, cfg.Path)
	case v > SchemaVersion:
		pool.Close()
		return nil, fmt.Errorf("%s: schema version %d is newer than this binary's %d: %w; run the newer pgwarden, or a schema this one knows",
			p.where, v, SchemaVersion, ErrSchema)
	}
	return p, nil
}

// version reads the schema's version; 0 when there is no schema.
func (p *Postgres) version(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var exists bool
	if err := p.pool.QueryRow(ctx, `SELECT to_regclass('pgwarden.schema_version') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, err
	}
	if !exists {
		return 0, nil
	}
	var v int
	err := p.pool.QueryRow(ctx, `SELECT version FROM pgwarden.schema_version`).Scan(&v)
	return v, err
}

// Init creates the schema or migrates it to this binary's version, in one
// transaction, idempotently; it returns the versions before and after.
func Init(ctx context.Context, cfg *config.Config) (from, to int, err error) {
	pcfg, err := connConfig(cfg)
	if err != nil {
		return 0, 0, err
	}
	conn, err := pgx.ConnectConfig(ctx, pcfg.ConnConfig)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", where(pcfg), err)
	}
	defer conn.Close(context.Background())
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// One migrator at a time, across instances.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('pgwarden store migration'))`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS pgwarden`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS pgwarden.schema_version (version int NOT NULL)`); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM pgwarden.schema_version`).Scan(&from); err != nil {
			return err
		}
		if from > SchemaVersion {
			return fmt.Errorf("schema version %d is newer than this binary's %d: %w", from, SchemaVersion, ErrSchema)
		}
		for v := from; v < SchemaVersion; v++ {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migration %d: %w", v+1, err)
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM pgwarden.schema_version`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO pgwarden.schema_version VALUES ($1)`, SchemaVersion)
		return err
	})
	if err != nil {
		return from, from, fmt.Errorf("%s: %w", where(pcfg), err)
	}
	return from, SchemaVersion, nil
}

// Load implements Users.
func (p *Postgres) Load(ctx context.Context) (*authcore.Users, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	entries, err := readEntries(ctx, p.pool)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.where, err)
	}
	data := []byte(strings.Join(entries, "\n"))
	us, err := authcore.ParseUsers(p.where, data)
	if err != nil {
		return nil, err
	}
	us.SetFingerprint(sha256.Sum256(data))
	return us, nil
}

// Fingerprint is the digest of the users as the store holds them now, the
// one Load gives the users it reads: one short query, where Load reads
// and parses every user. Any role that can connect to the store's
// database can NOTIFY pgwarden_users, and before December 2026 every
// notification (up to ten a second, for as long as someone sent them)
// reloaded each instance: every user read and parsed, the credential and
// token caches emptied (so each active user's next login ran its full
// hash), the identity providers' key sets fetched again. An instance now
// reloads only when the fingerprint differs from that of the users in
// force.
func (p *Postgres) Fingerprint(ctx context.Context) ([32]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var sum []byte
	var out [32]byte
	err := p.pool.QueryRow(ctx, `SELECT sha256(convert_to(coalesce(string_agg(entry, E'\n' ORDER BY name COLLATE "C"), ''), 'UTF8'))
		FROM pgwarden.users`).Scan(&sum)
	if err != nil {
		return out, fmt.Errorf("%s: %w", p.where, err)
	}
	if len(sum) != len(out) {
		return out, fmt.Errorf("%s: a fingerprint of %d bytes", p.where, len(sum))
	}
	copy(out[:], sum)
	return out, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func readEntries(ctx context.Context, q querier) ([]string, error) {
	// In byte order, as Fingerprint reads them: the database's collation
	// could order names otherwise.
	rows, err := q.Query(ctx, `SELECT entry FROM pgwarden.users ORDER BY name COLLATE "C"`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Update implements Users: in one transaction that holds the table's
// write lock, read every user, apply change, check, write what changed,
// and NOTIFY every instance (delivered at commit).
func (p *Postgres) Update(ctx context.Context, change func([]*authcore.User) ([]*authcore.User, error), check func(*authcore.Users) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE pgwarden.users IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		entries, err := readEntries(ctx, tx)
		if err != nil {
			return err
		}
		cur, err := authcore.ParseUsers(p.where, []byte(strings.Join(entries, "\n")))
		if err != nil {
			return err
		}
		before := map[string]string{}
		for _, u := range cur.All() {
			b, err := authcore.EncodeUsers([]*authcore.User{u})
			if err != nil {
				return err
			}
			before[u.Name] = string(b)
		}
		list, err := change(cur.All())
		if err != nil {
			return err
		}
		if _, err := authcore.NewUsers(list); err != nil {
			return err
		}
		after := map[string]string{}
		var all []string
		for _, u := range list {
			b, err := authcore.EncodeUsers([]*authcore.User{u})
			if err != nil {
				return err
			}
			after[u.Name] = string(b)
			all = append(all, string(b))
		}
		next, err := authcore.ParseUsers(p.where, []byte(strings.Join(all, "\n")))
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(next); err != nil {
				return err
			}
		}
		var changed []string
		for name := range before {
			if _, ok := after[name]; !ok {
				if _, err := tx.Exec(ctx, `DELETE FROM pgwarden.users WHERE name = $1`, name); err != nil {
					return err
				}
				changed = append(changed, name)
			}
		}
		for name, entry := range after {
			if before[name] == entry {
				continue
			}
			if _, err := tx.Exec(ctx, `INSERT INTO pgwarden.users (name, entry) VALUES ($1, $2)
				ON CONFLICT (name) DO UPDATE SET entry = excluded.entry, updated_at = now()`, name, entry); err != nil {
				return err
			}
			changed = append(changed, name)
		}
		if len(changed) == 0 {
			return nil
		}
		sort.Strings(changed)
		payload := strings.Join(changed, ",")
		if len(payload) > 7000 {
			payload = "*" // NOTIFY payloads are bounded: "everything"
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, payload)
		return err
	})
	if err != nil && !isUserError(err) {
		return fmt.Errorf("%s: %w", p.where, err)
	}
	return err
}

// isUserError says whether err is the change's or the check's own refusal,
// which callers match (ErrNoSuchUser) and show as they are.
func isUserError(err error) bool {
	return errors.Is(err, authcore.ErrNoSuchUser)
}

// Where implements Users.
func (p *Postgres) Where() string { return p.where }

// Pool is the store's connection pool, for the console's sessions.
func (p *Postgres) Pool() *pgxpool.Pool { return p.pool }

// Setting returns the shared value of key, storing make's value first when
// there is none yet: the first instance to ask decides for all.
func (p *Postgres) Setting(ctx context.Context, key string, make func() string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := p.pool.Exec(ctx, `INSERT INTO pgwarden.settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, key, make()); err != nil {
		return "", fmt.Errorf("%s: %w", p.where, err)
	}
	var v string
	if err := p.pool.QueryRow(ctx, `SELECT value FROM pgwarden.settings WHERE key = $1`, key).Scan(&v); err != nil {
		return "", fmt.Errorf("%s: %w", p.where, err)
	}
	return v, nil
}

// DeleteSetting forgets a shared setting (the next Setting makes it anew).
func (p *Postgres) DeleteSetting(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := p.pool.Exec(ctx, `DELETE FROM pgwarden.settings WHERE key = $1`, key); err != nil {
		return fmt.Errorf("%s: %w", p.where, err)
	}
	return nil
}

// Notify publishes payload on channel, for every instance (best effort).
func (p *Postgres) Notify(ctx context.Context, channel, payload string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := p.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, payload)
	return err
}

// Close implements Users.
func (p *Postgres) Close() { p.pool.Close() }

// listenCheckEvery is how long the LISTEN connection may stay silent
// before Listen asks the store whether it is still there. A network that
// drops packets (no reset, no FIN) leaves a connection open and silent:
// without the question, a notification lost that way (a revoked password)
// would go unnoticed until TCP keepalive gave up, tens of minutes later.
const listenCheckEvery = time.Second

// waitForNotification waits for the next notification; after
// listenCheckEvery of silence it sends the store an empty query instead,
// which must answer within timeout, and returns (nil, nil) when it did.
// The answer comes after any notification committed before the question
// was sent (PostgreSQL delivers those first), so a silence that ends with
// an answer missed nothing.
func waitForNotification(ctx context.Context, conn *pgx.Conn, timeout time.Duration) (*pgconn.Notification, error) {
	wctx, cancel := context.WithTimeout(ctx, listenCheckEvery)
	n, err := conn.WaitForNotification(wctx)
	cancel()
	if err == nil || ctx.Err() != nil || !pgconn.Timeout(err) {
		return n, err
	}
	// pgconn's deadline ended the wait and left the connection usable.
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := conn.PgConn().Ping(pctx); err != nil {
		return nil, fmt.Errorf("the store did not answer within %v: %w", timeout, err)
	}
	return nil, nil
}

// listenConn connects and LISTENs, each step within timeout: a network
// that goes silent during either (no reset, no FIN) would otherwise leave
// Listen waiting, neither listening nor calling onLost, while the instance
// went on trusting users a change on another instance had revoked.
func listenConn(ctx context.Context, cc *pgx.ConnConfig, timeout time.Duration) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cc)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := conn.Exec(lctx, "LISTEN "+Channel+"; LISTEN "+ThrottleChannel); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("LISTEN: %w", err)
	}
	return conn, nil
}

// reloadGap is the least time between two onChange calls of Listen: the
// notifications that arrive within it are taken in by one. Any role that
// can connect to the store's database can NOTIFY on the channel, and one
// statement sends thousands; each onChange reads every user from the store,
// so without the gap a flood made each instance reload hundreds of times a
// second for as long as the queue lasted. A single change still applies at
// once: the gap only delays a change that follows another within it.
const reloadGap = 100 * time.Millisecond

// takeInFor reads the notifications that come within d, passing throttle
// events on, and says whether any was a users change (to be read with the
// one at hand). A wait that ends by its deadline leaves the connection
// usable, as in waitForNotification.
func takeInFor(ctx context.Context, conn *pgx.Conn, d time.Duration, onThrottle func(string)) (more bool, err error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		n, err := conn.WaitForNotification(wctx)
		switch {
		case err != nil && ctx.Err() == nil && pgconn.Timeout(err):
			return more, nil
		case err != nil:
			return more, err
		case n.Channel == ThrottleChannel:
			if onThrottle != nil {
				onThrottle(n.Payload)
			}
		default:
			more = true
		}
	}
}

// Listen holds a LISTEN connection until ctx ends: onChange runs once each
// time LISTEN takes effect (changes before it would be missed otherwise)
// and for each notification (those within reloadGap of the last call
// taken in by one), and onLost when the connection goes, falls silent past
// [backend] connect_timeout (see listenCheckEvery), or cannot be made (it
// is tried again every second).
// While it is down, callers must not trust what they cached.
func Listen(ctx context.Context, cfg *config.Config, onChange func(payload string), onThrottle func(payload string), onLost func(error)) {
	pcfg, err := connConfig(cfg)
	if err != nil {
		onLost(err)
		return
	}
	checkTimeout := cfg.Backend.ConnectTimeout.Duration
	// Its own name in pg_stat_activity: it asks the store a question
	// every second of silence, which is not the pool's work.
	cc := pcfg.ConnConfig.Copy()
	cc.RuntimeParams["application_name"] = "pgwarden-store-listen"
	for ctx.Err() == nil {
		conn, err := listenConn(ctx, cc, checkTimeout)
		if err == nil {
			// What changed before LISTEN took effect (since the last
			// load, or while the connection was down) is read now.
			onChange("*")
			last := time.Now()
			for {
				n, werr := waitForNotification(ctx, conn, checkTimeout)
				if werr != nil {
					err = werr
					break
				}
				if n == nil {
					continue // silence, and the store answered
				}
				if n.Channel == ThrottleChannel {
					if onThrottle != nil {
						onThrottle(n.Payload)
					}
					continue
				}
				payload := n.Payload
				if gap := reloadGap - time.Since(last); gap > 0 {
					more, werr := takeInFor(ctx, conn, gap, onThrottle)
					if werr != nil {
						err = werr
						break
					}
					if more {
						payload = "*"
					}
				}
				onChange(payload)
				last = time.Now()
			}
		}
		if conn != nil {
			conn.Close(context.Background())
		}
		if ctx.Err() != nil {
			return
		}
		onLost(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

package backend

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/internal/membudget"
)

// maxConnsPerHTTPPool bounds the backend connections one backend login
// holds for HTTP requests.
const maxConnsPerHTTPPool = 10

// ErrPoolClosed is Acquire's answer when the pool it was given has been
// closed since: nothing ran, and a new Get gives a pool to retry on.
var ErrPoolClosed = errors.New("the HTTP backend pool was closed: get another")

// maxHTTPPools bounds the pools kept at once. Each (role, database,
// password) a request names makes one, and a client chooses the database
// (?db=): without a bound, requests naming ever new databases kept a pool
// (and its health-check goroutine) each until the idle timeout. Past the
// bound, Get closes the least recently used pools that lend no connection.
const maxHTTPPools = 1000

// resetTimeout bounds the reset of a released backend.
const resetTimeout = 5 * time.Second

// HTTPPools keeps one bounded pgxpool per backend login (host, port, role,
// database, password, backend TLS settings) for the HTTP frontend; a pool unused for [backend]
// idle_timeout is closed. Requests of different users mapped to one backend
// role share a pool, so every connection is reset ([backend] reset_query,
// DISCARD ALL by default) when a request releases it, before anyone else
// can acquire it: no session state (SET, set_config, temporary tables,
// prepared statements, advisory locks) passes from one request to the next.
// A single statement has the reset pipelined behind it (QueryThenReset),
// so it costs no round trip; other requests are reset in pgxpool's
// release goroutine, after the request's answer is ready.
type HTTPPools struct {
	log  *zap.Logger
	mu   sync.Mutex
	m    map[[32]byte]*httpPoolEntry
	stop chan struct{}
	done chan struct{}

	states connStates
	resets sync.Map // *pgxpool.Pool -> reset query QueryThenReset may pipeline

	// Timings, when set before the first Get, receives connect and
	// acquire times.
	Timings PoolTimings

	// ConfigureTypes, when set (before the first pool), is given each new
	// connection's type map: the HTTP frontend adds how its own argument
	// values are sent.
	ConfigureTypes func(*pgtype.Map)

	// Results, when set before the first Get, is the budget of
	// http.max_request_memory: each connection's large backend messages
	// take room in it before pgx reads them (see messageGate).
	Memory *membudget.Budget

	// budget counts the connections against max_backend_connections
	// (CountAgainst); uses says which are idle, for shedding.
	budget *Pool
	limits func() PoolLimits
	useMu  sync.Mutex
	uses   map[*poolSocket]connUse
}

type httpPoolEntry struct {
	pool     *pgxpool.Pool
	lastUsed time.Time
	host     string
	port     int
	database string
}

// NewHTTPPools makes an empty set of pools; Start runs its janitor.
func NewHTTPPools(log *zap.Logger) *HTTPPools {
	return &HTTPPools{log: log, m: map[[32]byte]*httpPoolEntry{}, stop: make(chan struct{}), done: make(chan struct{}),
		uses: map[*poolSocket]connUse{}}
}

// Start closes pools unused for the idle timeout in force, until Close.
func (p *HTTPPools) Start(idleTimeout func() time.Duration) {
	go janitor(10*time.Second, p.stop, p.done, func() { p.closeIdle(idleTimeout()) })
}

func (p *HTTPPools) closeIdle(idle time.Duration) {
	p.mu.Lock()
	var old []*pgxpool.Pool
	for k, e := range p.m {
		if time.Since(e.lastUsed) > idle {
			old = append(old, e.pool)
			delete(p.m, k)
		}
	}
	p.mu.Unlock()
	for _, pl := range old {
		pl.Close()
		p.resets.Delete(pl)
	}
}

// evictLocked closes up to n of the least recently used pools that lend no
// connection; p.mu is held. Pools whose connections are all in use stay:
// those are bounded by the requests in flight (server.max_connections).
func (p *HTTPPools) evictLocked(n int) {
	type cand struct {
		key  [32]byte
		used time.Time
	}
	var idle []cand
	for k, e := range p.m {
		if e.pool.Stat().AcquiredConns() == 0 {
			idle = append(idle, cand{k, e.lastUsed})
		}
	}
	slices.SortFunc(idle, func(a, b cand) int { return a.used.Compare(b.used) })
	for _, c := range idle[:min(n, len(idle))] {
		e := p.m[c.key]
		delete(p.m, c.key)
		p.resets.Delete(e.pool)
		go e.pool.Close() // waits for nothing in use, but closes sockets
	}
}

// dropIfEmpty forgets pool when it holds no connection: its backend login
// failed (no such database, a role that may not log in), and a pool kept
// for it would only wait for the idle timeout. The next request makes a
// new one.
func (p *HTTPPools) dropIfEmpty(pool *pgxpool.Pool) {
	if pool.Stat().TotalConns() != 0 {
		return
	}
	p.mu.Lock()
	for k, e := range p.m {
		if e.pool == pool {
			delete(p.m, k)
			break
		}
	}
	p.mu.Unlock()
	p.resets.Delete(pool)
	pool.Close()
}

// Pools says how many pools are kept, for tests and metrics.
func (p *HTTPPools) Pools() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}

// Close closes every pool and stops the janitor.
func (p *HTTPPools) Close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
		select {
		case <-p.done:
		case <-time.After(time.Second):
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, e := range p.m {
		e.pool.Close()
		p.resets.Delete(e.pool)
		delete(p.m, k)
	}
}

// ReleaseDatabases closes the idle connections of the pools for the named
// databases on the server host:port, and those in use once they are
// released (see Pool.ReleaseDatabases).
func (p *HTTPPools) ReleaseDatabases(host string, port int, names []string) {
	if len(names) == 0 {
		return
	}
	var hit []*pgxpool.Pool
	p.mu.Lock()
	for _, e := range p.m {
		if e.host == host && e.port == port && namedIn(e.database, names) {
			hit = append(hit, e.pool)
		}
	}
	p.mu.Unlock()
	for _, pl := range hit {
		pl.Reset()
	}
}

// Get returns the pool for t, making it when needed. The key hashes the
// password rather than holding it in a map key.
func (p *HTTPPools) Get(cfg *config.Config, t Target) (*pgxpool.Pool, error) {
	var buf [256]byte
	b := append(buf[:0], t.Host...)
	b = strconv.AppendInt(append(b, 0), int64(t.Port), 10)
	b = strconv.AppendInt(append(b, 0), cfg.HTTP.MaxResultBytes, 10)
	for _, f := range [...]string{t.Role, t.Database, t.Password, cfg.Backend.ResetQuery, t.TLS} {
		b = append(append(b, 0), f...)
	}
	key := sha256.Sum256(b)
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.m[key]; e != nil {
		e.lastUsed = time.Now()
		return e.pool, nil
	}
	pcfg, err := PoolConfig(cfg, t, "pgwarden-http")
	if err != nil {
		return nil, err
	}
	if len(p.m) >= maxHTTPPools {
		p.evictLocked(len(p.m) - maxHTTPPools + 1)
	}
	// Descriptions are cached, statements are not prepared by name: the
	// reset's DEALLOCATE ALL then leaves pgx nothing to lose, and each
	// query is still one round trip (Parse, Bind, Execute, Sync).
	pcfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	pcfg.ConnConfig.Tracer = poolTracer{&p.Timings}
	pcfg.MaxConns = maxConnsPerHTTPPool
	pcfg.MaxConnIdleTime = cfg.Backend.IdleTimeout.Duration
	pcfg.MaxConnLifetime = cfg.Backend.MaxLifetime.Duration
	resetQuery := cfg.Backend.ResetQuery
	// A connection is reset before it goes back to the pool (Release);
	// one that came back any other way is reset here, before anyone uses
	// it. Not pgxpool's AfterRelease: that starts a goroutine on every
	// release, which a connection QueryThenReset already reset never needs.
	watch := &settingsWatch{role: t.Role, database: t.Database}
	pcfg.ConnConfig.DialFunc = p.dialCounted(pcfg.ConnConfig.DialFunc)
	if p.Memory != nil {
		pcfg.ConnConfig.BuildFrontend = gateMessages(p.Memory)
	}
	// A request whose time runs out (or whose client leaves) cancels its
	// statement and reads the backend's answer (see cancelOnDone); a
	// backend that answers nothing within connect_timeout after that is
	// given up.
	grace := cfg.Backend.ConnectTimeout.Duration
	if grace <= 0 {
		grace = resetTimeout
	}
	pcfg.ConnConfig.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return newCancelOnDone(pc, t.Host, t.Port, grace)
	}
	pcfg.PrepareConn = func(ctx context.Context, c *pgx.Conn) (bool, error) {
		if !IdleConnAlive(ctx, c.PgConn()) {
			p.log.Debug("HTTP backend not reused: the backend closed it or sent a message while it was idle", zap.String("role", t.Role), zap.String("database", t.Database))
			return false, nil
		}
		if !p.markBusy(c.PgConn()) {
			return false, nil
		}
		if !p.states.takeClean(c.PgConn()) {
			if !p.reset(c, resetQuery) {
				return false, nil
			}
			p.states.takeClean(c.PgConn()) // handed out: the release resets it
		}
		return p.settingsCurrent(ctx, c.PgConn(), watch), nil
	}
	// pgxpool pings a connection idle for a second before handing it out;
	// reading its settings proves it alive as well, in the same round trip.
	pcfg.ShouldPing = func(_ context.Context, sp pgxpool.ShouldPingParams) bool {
		return sp.IdleDuration >= settingsCheckEvery && !p.states.markIdle(sp.Conn.PgConn())
	}
	afterConnect := pcfg.AfterConnect
	maxMessage := maxHTTPMessage(cfg.HTTP.MaxResultBytes)
	pcfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if afterConnect != nil {
			if err := afterConnect(ctx, c); err != nil {
				return err
			}
		}
		c.PgConn().Frontend().SetMaxBodyLen(maxMessage)
		if p.ConfigureTypes != nil {
			p.ConfigureTypes(c.TypeMap())
		}
		at := time.Now()
		settings, err := ReadSettings(ctx, c.PgConn())
		if err != nil {
			// Not PostgreSQL's catalog (a pooler in between, say): the
			// connection serves as before, without the check.
			p.log.Debug("HTTP backend's role and database settings could not be read; they are not checked", zap.String("role", t.Role), zap.String("database", t.Database), zap.Error(err))
		} else {
			watch.learn(settings, at)
		}
		p.states.connected(c.PgConn(), resetQuery, settings, err == nil)
		return nil
	}
	pcfg.BeforeClose = func(c *pgx.Conn) { p.states.forget(c.PgConn()) }
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return nil, err
	}
	if oneStatement(resetQuery) {
		p.resets.Store(pool, resetQuery)
	}
	p.m[key] = &httpPoolEntry{pool: pool, lastUsed: time.Now(), host: t.Host, port: t.Port, database: t.Database}
	return pool, nil
}

// maxHTTPMessage is the largest backend message an HTTP connection reads:
// a row whose values alone pass http.max_result_bytes is refused before
// pgx allocates room for it (the connection is then closed), not after.
// The margin holds any row's column lengths and any row description.
func maxHTTPMessage(maxResultBytes int64) int {
	return int(min(maxResultBytes+1<<20, 1<<30+1<<20))
}

// Release returns a connection of one of the pools. One that
// QueryThenReset left reset goes straight back; any other is reset first,
// on a goroutine of its own so that the request's answer does not wait for
// it, and closed instead when the reset fails.
func (p *HTTPPools) Release(c *pgxpool.Conn) {
	conn := c.Conn()
	releaseMessageRoom(conn.PgConn())
	if p.states.isClean(conn.PgConn()) {
		p.markIdle(conn.PgConn())
		c.Release()
		return
	}
	query, known := p.states.resetQuery(conn.PgConn())
	go func() {
		if !known || !p.reset(conn, query) {
			conn.Close(context.Background()) // and the release destroys it
		} else {
			p.markIdle(conn.PgConn())
		}
		c.Release()
	}()
}

// ReleaseAfter returns a connection whose request ran stmts: as Release
// does, unless a statement may have left session state that no reset
// removes (see keepsSessionState): then the connection is closed instead.
func (p *HTTPPools) ReleaseAfter(c *pgxpool.Conn, stmts ...string) {
	for _, sql := range stmts {
		if keepsSessionState(sql) {
			p.discard(c)
			return
		}
	}
	p.Release(c)
}

// discard closes a connection of one of the pools instead of returning it.
func (p *HTTPPools) discard(c *pgxpool.Conn) {
	conn := c.Conn()
	releaseMessageRoom(conn.PgConn())
	go func() {
		conn.Close(context.Background()) // and the release destroys it
		c.Release()
	}()
}

// SessionStateCalls are names whose call leaves state that lives until the
// session ends, which DISCARD ALL does not remove (the wire relay's watch
// looks for the same names, so one list serves both frontends): a dblink connection
// (dblink_connect, dblink_connect_u), open and logged in as whoever the
// statement named; a temporary replication slot (any name with
// replication_slot: the create and copy functions), which holds back WAL
// for as long as the connection is pooled and is the next request's
// session's own; a session replication origin
// (pg_replication_origin_session_setup), which would tag the next
// requests' changes.
var SessionStateCalls = [...]string{"dblink_connect", "replication_slot", "origin_sess"}

// keepsSessionState says whether sql may leave such state. It errs towards
// finding: a name anywhere, in any case, also in a string literal, and any
// Unicode-escaped identifier (U&"...", which could spell a name without
// writing it). A call inside a function the request calls is not seen. It
// runs on every request, so it does not copy the text.
func keepsSessionState(sql string) bool {
	if strings.Contains(sql, `&"`) {
		return true
	}
	for _, name := range SessionStateCalls {
		if containsFold(sql, name) {
			return true
		}
	}
	return false
}

// containsFold reports whether s holds name (lower case) in any case.
func containsFold(s, name string) bool {
	first := name[0]
	upper := first - ('a' - 'A')
	for i := 0; i+len(name) <= len(s); i++ {
		if c := s[i]; c != first && c != upper {
			continue
		}
		if strings.EqualFold(s[i:i+len(name)], name) {
			return true
		}
	}
	return false
}

// settingsCheckEvery is how old the pool's knowledge of its role and
// database settings may grow before a connection handed out reads them
// again; also the idle time after which the connection handed out is
// itself checked (in place of pgxpool's ping).
const settingsCheckEvery = time.Second

// settingsWatch is what one pool knows of the role and database settings a
// fresh login of its role and database would apply now.
type settingsWatch struct {
	role, database string // for the log

	mu        sync.Mutex
	latest    string
	known     bool
	checkedAt time.Time // when the read behind latest started, or was claimed
}

// claim says whether the settings are due to be read at now; the caller
// that gets true reads them (others go on with what is known).
func (w *settingsWatch) claim(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.known && now.Sub(w.checkedAt) < settingsCheckEvery {
		return false
	}
	w.checkedAt = now
	return true
}

// learn records settings read by a query sent at at, unless a read that
// started later is already known.
func (w *settingsWatch) learn(settings string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.known && at.Before(w.checkedAt) {
		return
	}
	w.latest, w.known, w.checkedAt = settings, true, at
}

// matches says whether a connection that logged in with settings applies
// what a fresh login would.
func (w *settingsWatch) matches(settings string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.known || settings == w.latest
}

// settingsCurrent says whether connection pc, about to be handed out,
// still applies the role and database settings a fresh login would: DISCARD
// ALL resets to those of its own login, so after ALTER ROLE ... SET or
// ALTER DATABASE ... SET it would not. The settings are read on pc itself
// when it was idle for settingsCheckEvery or the pool's knowledge is that
// old, so a change is seen by the next request after an idle second, and
// within a second under load, at one query per second per pool rather than
// one round trip per request. False also when the read fails: the pool
// then closes pc and takes another.
func (p *HTTPPools) settingsCurrent(ctx context.Context, pc *pgconn.PgConn, w *settingsWatch) bool {
	settings, known, checkNow := p.states.loginSettings(pc)
	if !known {
		return true
	}
	if now := time.Now(); w.claim(now) || checkNow {
		v, err := ReadSettings(ctx, pc)
		if err != nil {
			p.log.Debug("HTTP backend not reused: reading its role and database settings failed", zap.String("role", w.role), zap.String("database", w.database), zap.Error(err))
			return false
		}
		w.learn(v, now)
	}
	if !w.matches(settings) {
		p.log.Debug("HTTP backend closed: the role or database settings changed since it logged in", zap.String("role", w.role), zap.String("database", w.database))
		return false
	}
	return true
}

// reset makes a connection fit for the next request and marks it so; false
// when it is not (the pool then closes it).
func (p *HTTPPools) reset(c *pgx.Conn, query string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), resetTimeout)
	defer cancel()
	if _, err := c.PgConn().Exec(ctx, query).ReadAll(); err != nil {
		p.log.Debug("HTTP backend not reused: reset failed", zap.Error(err))
		return false
	}
	if c.PgConn().TxStatus() != 'I' {
		return false
	}
	p.states.markClean(c.PgConn())
	return true
}

package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"
	"go.uber.org/zap"
)

// maxDescriptionsPerConn bounds the statement descriptions kept for one
// backend connection; past it the cache starts over.
const maxDescriptionsPerConn = 512

// httpConnState is what HTTPPools knows of one pooled connection beyond
// pgx: the descriptions of the statements it ran (pgx's own description
// cache is not reachable from outside pgx), and whether it is already
// reset.
type httpConnState struct {
	descriptions map[string]*pgconn.StatementDescription
	clean        bool
	reset        string // the pool's reset query
	connected    bool   // reset is known (set by the pool's AfterConnect)
	// settings are the role and database settings the connection applied
	// at login (SettingsQuery), when settingsKnown.
	settings      string
	settingsKnown bool
	// checkSettings: the connection was idle long enough that the pool
	// would ping it; the settings are read instead, which proves it alive.
	checkSettings bool
	// user is the pgwarden user the connection served last (userKnown:
	// it served anyone yet). random()'s generator is seeded afresh when
	// another user comes (see ReseedQuery); a fresh backend's is seeded
	// by PostgreSQL. seedLost: a reseed failed, so whoever comes next
	// gets one.
	user      string
	userKnown bool
	seedLost  bool
}

// connStates holds httpConnState by connection, for the pools' hooks.
type connStates struct {
	mu sync.Mutex
	m  map[*pgconn.PgConn]*httpConnState
}

func (s *connStates) get(pc *pgconn.PgConn) *httpConnState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.getLocked(pc)
}

// getLocked is get with s.mu held.
func (s *connStates) getLocked(pc *pgconn.PgConn) *httpConnState {
	if s.m == nil {
		s.m = map[*pgconn.PgConn]*httpConnState{}
	}
	st := s.m[pc]
	if st == nil {
		st = &httpConnState{descriptions: map[string]*pgconn.StatementDescription{}}
		s.m[pc] = st
	}
	return st
}

func (s *connStates) forget(pc *pgconn.PgConn) {
	s.mu.Lock()
	delete(s.m, pc)
	s.mu.Unlock()
}

// connected records a new connection of a pool whose reset is query, and
// the role and database settings it logged in with (known false: they
// could not be read).
func (s *connStates) connected(pc *pgconn.PgConn, query, settings string, known bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.getLocked(pc)
	st.clean, st.reset, st.connected = true, query, true // a new session has nothing to reset
	st.settings, st.settingsKnown = settings, known
}

// loginSettings are the settings the connection logged in with, and
// whether its settings are to be read now (see markIdle); known is false
// when they could not be read at login.
func (s *connStates) loginSettings(pc *pgconn.PgConn) (settings string, known, checkNow bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.m[pc]
	if st == nil {
		return "", false, false
	}
	checkNow, st.checkSettings = st.checkSettings, false
	return st.settings, st.settingsKnown, checkNow
}

// markIdle records that the connection was idle long enough to be checked
// before use; false when its settings are unknown, so that the pool's own
// ping must prove it alive.
func (s *connStates) markIdle(pc *pgconn.PgConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.m[pc]
	if st == nil || !st.settingsKnown {
		return false
	}
	st.checkSettings = true
	return true
}

// resetQuery is the reset of the connection's pool; false for a
// connection the pools do not know (never handed out again).
func (s *connStates) resetQuery(pc *pgconn.PgConn) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.m[pc]
	if st == nil || !st.connected {
		return "", false
	}
	return st.reset, true
}

// claimFor records that the connection serves user now and says whether
// random() must be seeded afresh first: it served another user last.
func (s *connStates) claimFor(pc *pgconn.PgConn, user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.getLocked(pc)
	need := st.userKnown && (st.seedLost || st.user != user)
	st.user, st.userKnown, st.seedLost = user, true, false
	return need
}

// loseSeed records that a reseed of the connection failed.
func (s *connStates) loseSeed(pc *pgconn.PgConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.getLocked(pc)
	st.userKnown, st.seedLost = true, true
}

// Acquire hands out a connection of pool for a request of user (the
// pgwarden user it authenticated as), its random() seeded afresh (one
// round trip) when the connection last served someone else. A connection
// whose reseed fails (EXECUTE on setseed revoked, say) is closed and
// another taken, in the end a new one, which PostgreSQL seeded itself.
// Release gives it back. ErrPoolClosed means the pool was closed after Get
// gave it (evicted, idle, or dropped after a failed login) before anything
// ran: Get a pool again and retry.
func (p *HTTPPools) Acquire(ctx context.Context, pool *pgxpool.Pool, user string) (*pgxpool.Conn, error) {
	for {
		c, err := pool.Acquire(ctx)
		if err != nil {
			var ce *pgconn.ConnectError
			if errors.As(err, &ce) {
				p.dropIfEmpty(pool)
			}
			if errors.Is(err, puddle.ErrClosedPool) {
				err = ErrPoolClosed
			}
			return nil, err
		}
		pc := c.Conn().PgConn()
		lendTo(ctx, pc)
		if !p.states.claimFor(pc, user) {
			return c, nil
		}
		_, err = pc.Exec(ctx, ReseedQuery()).ReadAll()
		if err == nil && pc.TxStatus() == 'I' {
			return c, nil
		}
		p.log.Debug("HTTP backend not reused: seeding random() failed", zap.Error(err))
		p.states.loseSeed(pc)
		p.discard(c)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// markClean records that the connection was just reset (or is new).
func (s *connStates) markClean(pc *pgconn.PgConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.getLocked(pc).clean = true
}

// isClean says whether the connection was reset since it was acquired.
func (s *connStates) isClean(pc *pgconn.PgConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.m[pc]
	return st != nil && st.clean
}

// takeClean says whether the connection was reset since it was last
// acquired (or is new), and clears the mark: it is being handed out.
func (s *connStates) takeClean(pc *pgconn.PgConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.m[pc]
	if st == nil || !st.clean {
		return false
	}
	st.clean = false
	return true
}

// QueryThenReset runs one statement on a connection of pool with the
// pool's reset pipelined behind it, hands the statement's rows to read,
// then reads the reset's result and gives the connection back. Statement
// and reset go to the backend in one write, each with its own Sync (so the
// reset runs whatever the statement did, and a statement that refuses to
// run in a transaction block still runs). The request pays no round trip
// for its reset, and the release finds the connection already clean. The
// caller answers its client after QueryThenReset returns: a client that
// reads its answer slowly, or never, holds no backend (it used to be
// answered first, and a dozen clients that did not read held every
// connection of a pool). When the reset cannot be
// pipelined, or anything goes wrong, the release runs it as usual. The
// connection comes from Acquire, so it never carries another user's
// random() state.
//
// Descriptions are cached per connection as pgx's "cache describe" mode
// does: the first run of a statement text on a connection costs one more
// round trip to learn its parameter types.
//
// formats, when not nil, says per result column type which columns come in
// binary (1) and which as PostgreSQL's text (0, any type it does not name),
// as pgx.QueryResultFormatsByOID does for Query.
func (p *HTTPPools) QueryThenReset(ctx context.Context, pool *pgxpool.Pool, user, sql string, args []any, formats pgx.QueryResultFormatsByOID, read func(pgx.Rows, *pgtype.Map) error) error {
	c, err := p.Acquire(ctx, pool, user)
	if err != nil {
		return err
	}
	defer p.ReleaseAfter(c, sql)
	conn := c.Conn()
	reset, ok := p.pipelinedReset(pool)
	if !ok {
		queryArgs := args
		if formats != nil {
			queryArgs = append([]any{formats}, args...)
		}
		rows, err := conn.Query(ctx, sql, queryArgs...)
		if err != nil {
			return err
		}
		defer rows.Close()
		if err := read(rows, conn.TypeMap()); err != nil {
			return err
		}
		rows.Close()
		return rows.Err()
	}
	pc := conn.PgConn()
	st := p.states.get(pc)
	sd, cached := st.descriptions[sql], true
	for {
		if sd == nil {
			cached = false
			if sd, err = pc.Prepare(ctx, "", sql, nil); err != nil {
				return err
			}
			if len(st.descriptions) >= maxDescriptionsPerConn {
				st.descriptions = map[string]*pgconn.StatementDescription{}
			}
			st.descriptions[sql] = sd
		}
		err = p.runPipelined(ctx, conn, st, sd, args, formats, reset, read)
		if err == nil {
			return nil
		}
		// A changed table may have made the description stale.
		delete(st.descriptions, sql)
		if !cached || !staleDescription(err) {
			return err
		}
		// Bind refused what the old description built, so nothing ran:
		// run it once more with a fresh description.
		sd = nil
	}
}

// staleDescription says whether err is what Bind answers to formats or
// values built from a description the table no longer matches.
func staleDescription(err error) bool {
	var pe *pgconn.PgError
	// Both are refusals of the Bind message (bind message has N result
	// formats but query has M columns; incorrect binary data format in
	// bind parameter): a statement that ran never gets them.
	return errors.As(err, &pe) && (pe.Code == "08P01" || pe.Code == "22P03")
}

// runPipelined sends the statement and the reset in one write, reads the
// statement's rows, then the reset's result.
func (p *HTTPPools) runPipelined(ctx context.Context, conn *pgx.Conn, st *httpConnState, sd *pgconn.StatementDescription, args []any, formats pgx.QueryResultFormatsByOID, reset string, read func(pgx.Rows, *pgtype.Map) error) error {
	if len(sd.ParamOIDs) != len(args) {
		return fmt.Errorf("expected %d arguments, got %d", len(sd.ParamOIDs), len(args))
	}
	var eqb pgx.ExtendedQueryBuilder
	if err := eqb.Build(conn.TypeMap(), sd, args); err != nil {
		return err
	}
	resultFormats := eqb.ResultFormats
	if formats != nil {
		resultFormats = make([]int16, len(sd.Fields))
		for i, f := range sd.Fields {
			resultFormats[i] = formats[f.DataTypeOID]
		}
	}
	pc := conn.PgConn()
	// A retry follows a run whose reset marked the connection clean: this
	// statement may leave state again, so only its own reset may say so.
	p.states.takeClean(pc)
	pl := pc.StartPipeline(ctx)
	pl.SendQueryParams(sd.SQL, eqb.ParamValues, sd.ParamOIDs, eqb.ParamFormats, resultFormats)
	pl.SendPipelineSync()
	pl.SendQueryParams(reset, nil, nil, nil, nil)
	pl.SendPipelineSync()
	if err := pl.Flush(); err != nil {
		return err
	}
	runErr := func() error {
		res, err := pl.GetResults()
		if err != nil {
			return err
		}
		rr, ok := res.(*pgconn.ResultReader)
		if !ok {
			return fmt.Errorf("pipeline: expected a result, got %T", res)
		}
		rows := pgx.RowsFromResultReader(conn.TypeMap(), rr)
		defer rows.Close()
		if err := read(rows, conn.TypeMap()); err != nil {
			return err
		}
		rows.Close()
		return rows.Err()
	}()
	// Close reads what is left: the statement's Sync, the reset's result
	// and its Sync. An error leaves the reset to the release.
	if err := pl.Close(); err == nil && pc.TxStatus() == 'I' {
		p.states.markClean(pc)
	}
	return runErr
}

// pipelinedReset is the reset to pipeline behind a statement on pool's
// connections, if it has one that the extended protocol can carry.
func (p *HTTPPools) pipelinedReset(pool *pgxpool.Pool) (string, bool) {
	q, ok := p.resets.Load(pool)
	if !ok {
		return "", false
	}
	return q.(string), true
}

// oneStatement says whether q can be sent with the extended protocol,
// which takes one statement; a reset_query of several runs as a simple
// query at release.
func oneStatement(q string) bool {
	return !strings.Contains(strings.TrimRight(strings.TrimSpace(q), "; \t\n"), ";")
}

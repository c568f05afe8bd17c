package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Clients that speak the protocol in every order a client can, reused
// backends, and the one question an attacker asks of session reuse: does
// anything of the last client reach the next one? Each chaos session logs
// in on a raw connection (mostly as one identity, sometimes as another
// role, database, application_name or options), proves that what it reads
// is its own (a marker query first), then sends a random stretch of
// messages (simple and extended queries, transactions left open or
// aborted, COPY in and out, stray copy messages, fast-path calls, errors,
// Flush without Sync, work never synced, queries canceled with its key,
// answers of megabytes, session state of every kind a reset must remove),
// reads some of the answers or none, and leaves in one of the ways clients
// leave: Terminate after reading everything, Terminate with answers still
// on their way, bytes after Terminate, a connection closed with or without
// a message cut in half. Sometimes its cancel key is sent again as the
// next client starts. After each, a probe logs in as a driver does and
// checks that its session is a fresh one of its own identity: its own
// answers only, no transaction, no prepared statement, cursor, LISTEN,
// advisory lock, temporary table, SET value or custom setting placeholder,
// its own role, database and startup parameters, and a query no old key
// cancels. Three backends serve four workers; the test logs how many
// probes got a backend another session had used (about a third).
//
// CHAOS_SEED=n replays a run (the seed is logged), CHAOS_SESSIONS=n sets
// the sessions per worker (the requests per worker of the HTTP test), and
// CHAOS_BACKEND adds [backend] lines (reset_query = "SELECT 1" shows what
// the probes find when the reset is gone).
func TestRandomClientsLeaveNothingToTheNextClientOfTheirBackend(t *testing.T) {
	seed, sessions := chaosSettings(t, 30)
	const workers = 4
	for ri, rc := range relays {
		t.Run(rc.name, func(t *testing.T) {
			g := rc.startWith(t, gwOptions{backend: "max_backend_connections = 3\nconnect_timeout = \"20s\"" + os.Getenv("CHAOS_BACKEND")})
			// The last chaos session of each backend (by its pid), to
			// name the one whose leftovers a probe found.
			var lastMu sync.Mutex
			last := map[uint32]string{}
			var logins, reused int // probes, and probes on a backend a session had
			defer func() {
				t.Logf("%d of %d probes got a backend another session had used; %d reloads", reused, logins,
					strings.Count(g.log.String(), `"msg":"reloaded"`))
			}()
			stopReloads := reloadNowAndThen(g, seed)
			defer stopReloads()
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(seed, uint64(ri*workers+w)))
					for i := 0; i < sessions; i++ {
						id := fmt.Sprintf("w%d-%d", w, i)
						cs := &chaosSession{rng: rng, id: id, tls: rc.tls && rng.IntN(4) != 0, who: randomIdentity(rng)}
						err := cs.run(g.addr())
						lastMu.Lock()
						last[cs.pid] = id + ":\n" + cs.trace()
						lastMu.Unlock()
						if err != nil {
							t.Errorf("chaos session %s: %v\n%s", id, err, cs.trace())
							return
						}
						// Sometimes the old key is sent again as the
						// next client starts: it must reach no one.
						stale := make(chan struct{})
						racing := cs.pid != 0 && rng.IntN(3) == 0
						if racing {
							delay := time.Duration(rng.IntN(40)) * time.Millisecond
							go func() {
								defer close(stale)
								time.Sleep(delay)
								sendCancelQuietly(g.addr(), cs.pid, cs.key)
							}()
						} else {
							close(stale)
						}
						who := cs.who
						if rng.IntN(4) == 0 {
							who = randomIdentity(rng)
						}
						pid, err := probeFreshSession(g, rng, id, who, racing)
						<-stale
						lastMu.Lock()
						logins++
						if _, ok := last[pid]; ok {
							reused++
						}
						if _, ok := last[pid]; !ok {
							last[pid] = "" // a probe's backend counts as used too
						}
						lastMu.Unlock()
						if err != nil {
							lastMu.Lock()
							before := last[pid]
							lastMu.Unlock()
							t.Errorf("probe %s: %v\nthe last chaos session on backend %d was %s", id, err, pid, before)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// chaosSettings reads CHAOS_SEED (a new seed when unset, logged for a
// replay) and CHAOS_SESSIONS (n when unset).
func chaosSettings(t *testing.T, n int) (seed uint64, count int) {
	t.Helper()
	seed, count = uint64(time.Now().UnixNano()), n
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seed = v
	}
	if s := os.Getenv("CHAOS_SESSIONS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		count = v
	}
	t.Logf("CHAOS_SEED=%d", seed)
	return seed, count
}

// reloadNowAndThen sends the gateway SIGHUP every 50 to 250 ms until the
// returned function is called: every login and reset then races a new
// snapshot of the same configuration, as on a server whose configuration
// management reloads it often.
func reloadNowAndThen(g *gateway, seed uint64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		rng := rand.New(rand.NewPCG(seed, 999))
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Duration(50+rng.IntN(200)) * time.Millisecond):
				g.cmd.Process.Signal(syscall.SIGHUP) // by the PID we started
			}
		}
	}()
	return func() { close(done); <-finished }
}

// chaosIdentity is what decides which parked backends a login may get:
// its role, database and startup parameters. Sessions and probes pick
// theirs at random, and a probe checks it got a backend of its own.
type chaosIdentity struct {
	user, db, appName string
	options           bool // options = -c search_path=opt_path
}

func randomIdentity(rng *rand.Rand) chaosIdentity {
	if rng.IntN(3) != 0 {
		// Mostly one identity, so that most logins find a backend
		// parked for them.
		return chaosIdentity{user: "alice", db: "postgres"}
	}
	return chaosIdentity{
		user:    []string{"alice", "bob"}[rng.IntN(2)],
		db:      []string{"postgres", "app_prod"}[rng.IntN(2)],
		appName: []string{"", "chaos-a"}[rng.IntN(2)],
		options: rng.IntN(4) == 0,
	}
}

func (ci chaosIdentity) startup() []byte {
	p := []string{"user", ci.user, "database", ci.db}
	if ci.appName != "" {
		p = append(p, "application_name", ci.appName)
	}
	if ci.options {
		p = append(p, "options", "-c search_path=opt_path")
	}
	return startupBytes(3, 0, p...)
}

// chaosSession is one randomly behaving client.
type chaosSession struct {
	rng  *rand.Rand
	id   string
	tls  bool
	who  chaosIdentity
	pid  uint32 // the backend's, from BackendKeyData
	key  []byte // the session's cancel key
	addr string
	conn net.Conn
	fe   *pgproto3.Frontend
	log  []string
}

func (cs *chaosSession) trace() string { return "  " + strings.Join(cs.log, "\n  ") }

func (cs *chaosSession) note(format string, args ...any) {
	cs.log = append(cs.log, fmt.Sprintf(format, args...))
}

// chaosSQL are the statements the sessions send: state a reset must
// remove, transaction control, errors, and statements whose answers take
// more than one message.
var chaosSQL = []string{
	"SELECT 1",
	"SELECT g FROM generate_series(1, 300) g",
	"BEGIN",
	"COMMIT",
	"ROLLBACK",
	"BEGIN; SELECT 1",
	"SELECT 1/0",
	"SAVEPOINT s1",
	"SET search_path = chaos, public",
	"SET statement_timeout = '7s'",
	"SET LOCAL work_mem = '8MB'",
	"SET SESSION AUTHORIZATION DEFAULT",
	"CREATE TEMP TABLE IF NOT EXISTS chaos_t(a int)",
	"PREPARE chaos_p AS SELECT 2",
	"DECLARE chaos_c CURSOR WITH HOLD FOR SELECT 1",
	"LISTEN chaos",
	"SELECT pg_try_advisory_lock(4242)",
	"SELECT pg_sleep(0.01)",
	"SELECT 1; SELECT 2",
	"SELECT 1; SELECT 1/0; SELECT 3",
	"COPY (SELECT g FROM generate_series(1, 200) g) TO STDOUT",
	"SELECT repeat('x', 100000) FROM generate_series(1, 20)",
	"SELECT set_config('chaos.tenant', 'x', false)",
	"SET chaos.other = 'y'",
	"DISCARD ALL",
	"NOTIFY chaos, 'hello'",
	"",
}

// chaosParseSQL are single statements for the extended protocol.
var chaosParseSQL = []string{
	"SELECT 1",
	"SELECT $1::int",
	"SELECT g FROM generate_series(1, 100) g",
	"SELECT 1/0",
	"BEGIN",
	"COMMIT",
	"SET search_path = chaos_ext",
	"SELECT pg_try_advisory_lock(4343)",
	"COPY (SELECT 1) TO STDOUT",
	"INSERT INTO chaos_t VALUES (1)",
}

func (cs *chaosSession) run(addr string) error {
	cs.addr = addr
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(40 * time.Second))
	cs.conn = c
	if cs.tls {
		if _, err := c.Write([]byte{0, 0, 0, 8, 4, 210, 22, 47}); err != nil {
			return err
		}
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'S' {
			return fmt.Errorf("SSLRequest answered %q, %v", b[0], err)
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			return err
		}
		cs.conn = tc
	}
	cs.fe = pgproto3.NewFrontend(cs.conn, cs.conn)
	cs.note("login (tls %v) %+v", cs.tls, cs.who)
	if _, err := cs.conn.Write(cs.who.startup()); err != nil {
		return err
	}
	if err := cs.readToReady(true); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	// Whatever this session reads must be its own.
	marker := "m-" + cs.id
	cs.note("Query marker")
	cs.fe.Send(&pgproto3.Query{String: "SELECT '" + marker + "'"})
	if err := cs.fe.Flush(); err != nil {
		return err
	}
	got, err := cs.readMarker()
	if err != nil {
		return fmt.Errorf("marker query: %w", err)
	}
	if got != marker {
		return fmt.Errorf("the marker query answered %q: an answer that was not this session's", got)
	}

	steps := 1 + cs.rng.IntN(7)
	for i := 0; i < steps; i++ {
		cs.step()
		if cs.rng.IntN(3) == 0 {
			if err := cs.fe.Flush(); err != nil {
				return nil // the server may close on what it was sent
			}
			if cs.rng.IntN(2) == 0 {
				cs.drain(50 * time.Millisecond)
			}
		}
	}
	return cs.leave()
}

// step queues one random message or group of messages.
func (cs *chaosSession) step() {
	r := cs.rng
	switch k := r.IntN(20); {
	case k < 8:
		q := chaosSQL[r.IntN(len(chaosSQL))]
		cs.note("Query %q", q)
		cs.fe.Send(&pgproto3.Query{String: q})
	case k < 13:
		name := ""
		if r.IntN(2) == 0 {
			name = "s" + strconv.Itoa(r.IntN(3))
		}
		q := chaosParseSQL[r.IntN(len(chaosParseSQL))]
		var params [][]byte
		if strings.Contains(q, "$1") {
			params = [][]byte{[]byte(strconv.Itoa(r.IntN(100)))}
		}
		cs.note("Parse %q %q, Bind, Describe, Execute", name, q)
		cs.fe.Send(&pgproto3.Parse{Name: name, Query: q})
		cs.fe.Send(&pgproto3.Bind{PreparedStatement: name, Parameters: params})
		cs.fe.Send(&pgproto3.Describe{ObjectType: 'P'})
		cs.fe.Send(&pgproto3.Execute{MaxRows: uint32(r.IntN(3))})
		switch r.IntN(4) {
		case 0: // no Sync: work left unsynced, or synced by a later step
			cs.note("(no Sync)")
		case 1:
			cs.note("Flush")
			cs.fe.Send(&pgproto3.Flush{})
		default:
			cs.note("Sync")
			cs.fe.Send(&pgproto3.Sync{})
		}
	case k < 14:
		cs.note("Sync")
		cs.fe.Send(&pgproto3.Sync{})
	case k < 16:
		// COPY FROM STDIN, its data sent at once, ended in one of the
		// ways a client ends it (or not at all).
		cs.note("Query COPY chaos_t FROM STDIN")
		cs.fe.Send(&pgproto3.Query{String: "CREATE TEMP TABLE IF NOT EXISTS chaos_t(a int); COPY chaos_t FROM STDIN"})
		cs.fe.Send(&pgproto3.CopyData{Data: []byte("1\n2\n")})
		switch r.IntN(4) {
		case 0:
			cs.note("CopyFail")
			cs.fe.Send(&pgproto3.CopyFail{Message: "chaos"})
		case 1:
			cs.note("(copy not ended)")
		default:
			cs.note("CopyDone")
			cs.fe.Send(&pgproto3.CopyDone{})
		}
	case k < 17:
		// Copy messages outside COPY, which PostgreSQL ignores.
		cs.note("stray CopyData, CopyDone")
		cs.fe.Send(&pgproto3.CopyData{Data: []byte("x")})
		cs.fe.Send(&pgproto3.CopyDone{})
	case k < 18:
		// pg_backend_pid by fast path (oid 2026).
		cs.note("FunctionCall pg_backend_pid")
		cs.fe.Send(&pgproto3.FunctionCall{Function: 2026, ResultFormatCode: 0})
	case k < 19 && r.IntN(2) == 0:
		// A query canceled with the session's own key.
		cs.note("Query pg_sleep(0.2), CancelRequest")
		cs.fe.Send(&pgproto3.Query{String: "SELECT pg_sleep(0.2)"})
		if cs.fe.Flush() == nil {
			time.Sleep(time.Duration(r.IntN(30)) * time.Millisecond)
			sendCancelQuietly(cs.addr, cs.pid, cs.key)
		}
	case k < 19:
		cs.note("Close statement s0, Sync")
		cs.fe.Send(&pgproto3.Close{ObjectType: 'S', Name: "s0"})
		cs.fe.Send(&pgproto3.Sync{})
	default:
		cs.note("Query BEGIN, SELECT 1/0 (aborted transaction)")
		cs.fe.Send(&pgproto3.Query{String: "BEGIN"})
		cs.fe.Send(&pgproto3.Query{String: "SELECT 1/0"})
	}
}

// leave ends the session the way one of many clients would.
func (cs *chaosSession) leave() error {
	r := cs.rng
	switch r.IntN(6) {
	case 0, 1: // a polite client: read what came, then Terminate
		cs.note("drain, Terminate")
		if err := cs.fe.Flush(); err != nil {
			return nil
		}
		cs.drain(100 * time.Millisecond)
		cs.fe.Send(&pgproto3.Terminate{})
		cs.fe.Flush()
	case 2: // Terminate with answers still coming
		cs.note("Terminate without reading")
		cs.fe.Send(&pgproto3.Terminate{})
		cs.fe.Flush()
	case 3: // bytes after Terminate
		cs.note("Terminate, then Query SET search_path = after_terminate")
		cs.fe.Send(&pgproto3.Terminate{})
		cs.fe.Send(&pgproto3.Query{String: "SET search_path = after_terminate"})
		cs.fe.Flush()
	case 4: // gone without a word
		cs.note("close without Terminate")
		cs.fe.Flush()
	default: // gone in the middle of a message
		cs.note("half a message, close")
		if err := cs.fe.Flush(); err != nil {
			return nil
		}
		cs.conn.Write([]byte{'Q', 0, 0, 0, 40, 'S', 'E', 'T'})
	}
	// Give the server a moment to see the end before the probe logs in,
	// sometimes: a probe that races the reset is a case too.
	if r.IntN(2) == 0 {
		time.Sleep(time.Duration(r.IntN(20)) * time.Millisecond)
	}
	return nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// sendCancelQuietly sends a CancelRequest as libpq does and waits (a
// little) for the server to close it.
func sendCancelQuietly(addr string, pid uint32, key []byte) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	c.Write(cancelBytes(pid, key))
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	io.Copy(io.Discard, c)
}

// readToReady reads up to ReadyForQuery; strict makes an ErrorResponse a
// failure.
func (cs *chaosSession) readToReady(strict bool) error {
	for {
		m, err := cs.fe.Receive()
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *pgproto3.BackendKeyData:
			cs.pid, cs.key = m.ProcessID, m.SecretKey
		case *pgproto3.ReadyForQuery:
			return nil
		case *pgproto3.ErrorResponse:
			if strict {
				return fmt.Errorf("%s %s", m.Code, m.Message)
			}
		}
	}
}

// readMarker reads the marker query's answer: one row, one value.
func (cs *chaosSession) readMarker() (string, error) {
	var got []string
	for {
		m, err := cs.fe.Receive()
		if err != nil {
			return "", err
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			for _, v := range m.Values {
				got = append(got, string(v))
			}
		case *pgproto3.ErrorResponse:
			return "", fmt.Errorf("%s %s", m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			if len(got) != 1 {
				return fmt.Sprint(got), nil
			}
			return got[0], nil
		}
	}
}

// drain reads answers until none comes for a while; a COPY FROM STDIN the
// session left open is ended so that reading can go on.
func (cs *chaosSession) drain(quiet time.Duration) {
	for {
		cs.conn.SetReadDeadline(time.Now().Add(quiet))
		m, err := cs.fe.Receive()
		if err != nil {
			cs.conn.SetReadDeadline(time.Now().Add(40 * time.Second))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// pgproto3 cannot go on after a timeout inside a
				// message: the session leaves without reading more.
				cs.note("(read timed out)")
			}
			return
		}
		if _, ok := m.(*pgproto3.CopyInResponse); ok && cs.rng.IntN(2) == 0 {
			cs.note("CopyDone (in drain)")
			cs.fe.Send(&pgproto3.CopyDone{})
			cs.fe.Flush()
		}
	}
}

// probeFreshSession logs in as drivers do and checks that the session is
// a fresh one, whichever backend it got.
// With racing, the marker query takes a while, in which the last chaos
// session's cancel key arrives.
func probeFreshSession(g *gateway, rng *rand.Rand, id string, who chaosIdentity, racing bool) (pid uint32, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	conn := g.connString(who.user, "", who.db) + " default_query_exec_mode=simple_protocol"
	searchPath := `"$user", public`
	if who.options {
		conn += " options='-c search_path=opt_path'"
		searchPath = "opt_path"
	}
	if who.appName != "" {
		conn += " application_name=" + who.appName
	}
	c, err := pgx.Connect(ctx, conn)
	if err != nil {
		return 0, fmt.Errorf("login: %w", err)
	}
	defer c.Close(context.Background())
	pid = c.PgConn().PID()
	if s := c.PgConn().TxStatus(); s != 'I' {
		return pid, fmt.Errorf("the session starts with transaction status %q", s)
	}
	marker := "p-" + id
	q := "SELECT '" + marker + "'"
	if racing {
		q += " FROM pg_sleep(0.05)"
	}
	var got string
	if err := c.QueryRow(ctx, q).Scan(&got); err != nil || got != marker {
		return pid, fmt.Errorf("the marker query answered %q, %v", got, err)
	}
	check := `SELECT
	  now() = statement_timestamp() AS no_open_transaction,
	  (SELECT count(*) FROM pg_prepared_statements) = 0 AS no_prepared_statement,
	  (SELECT count(*) FROM pg_cursors) = 0 AS no_cursor,
	  (SELECT count(*) FROM pg_listening_channels()) = 0 AS no_listen,
	  (SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory') = 0 AS no_advisory_lock,
	  (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()) = 0 AS no_temp_table,
	  current_setting('search_path') = ` + quoteLiteral(searchPath) + ` AS own_search_path,
	  current_setting('statement_timeout') = '0' AS default_statement_timeout,
	  current_setting('work_mem') = '4MB' AS default_work_mem,
	  current_setting('application_name') = ` + quoteLiteral(who.appName) + ` AS own_application_name,
	  current_setting('chaos.tenant', true) IS NULL AS no_tenant_placeholder,
	  current_setting('chaos.other', true) IS NULL AS no_other_placeholder,
	  current_user = ` + quoteLiteral(who.user) + ` AND session_user = current_user AS own_role,
	  current_database() = ` + quoteLiteral(who.db) + ` AS own_database`
	rows, err := c.Query(ctx, check)
	if err != nil {
		return pid, err
	}
	vals, err := pgx.CollectExactlyOneRow(rows, pgx.RowToMap)
	if err != nil {
		return pid, err
	}
	var failed []string
	for k, v := range vals {
		if v != true {
			failed = append(failed, k)
		}
	}
	if len(failed) > 0 {
		return pid, fmt.Errorf("the session is not a fresh one: %v are false", failed)
	}
	// Sometimes leave the probe's own backend for the next chaos session.
	if rng.IntN(3) == 0 {
		_, err := c.Exec(ctx, "SELECT 1")
		return pid, err
	}
	return pid, nil
}

// The same question of /_sql's pooled connections: users mapped to one
// backend role send random requests (single statements, transactions that
// try to end themselves, bulk requests, errors, answers of megabytes,
// clients that give up in the middle of a statement), each leaving what
// session state it can; probes in between, as another of those users,
// must find a fresh session every time. Two connections for four workers
// make nearly every request take a connection another request used.
func TestRandomHTTPRequestsLeaveNothingToTheNextRequestOfTheirConnection(t *testing.T) {
	seed, requests := chaosSettings(t, 150)
	users := []testUser{
		{name: "carol", password: "carol-Pass-3", extra: "backend_user = \"app_rw\"\n"},
		{name: "dave", password: "dave-Pass-4", extra: "backend_user = \"app_rw\"\n"},
	}
	g := startGatewayWith(t, gwOptions{http: true, backend: "pool_size = 2\nconnect_timeout = \"20s\"" + os.Getenv("CHAOS_BACKEND")},
		"[[hba]]\nprotocol = \"http\"\nmethod = \"password\"\n", users)
	const workers = 4
	stopReloads := reloadNowAndThen(g, seed)
	defer stopReloads()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(100+w)))
			client := &http.Client{Timeout: 60 * time.Second}
			for i := 0; i < requests; i++ {
				u := users[rng.IntN(2)]
				body, trace := chaosHTTPBody(rng)
				timeout := time.Duration(0)
				if rng.IntN(8) == 0 {
					timeout = time.Duration(5+rng.IntN(60)) * time.Millisecond // gives up
				}
				if err := chaosHTTPRequest(client, g, u, body, timeout); err != nil {
					t.Errorf("request w%d-%d (%s) %s: %v", w, i, u.name, trace, err)
					return
				}
				p := users[rng.IntN(2)]
				if err := probeFreshHTTPRequest(client, g, p); err != nil {
					t.Errorf("probe after request w%d-%d (%s) %s: %v", w, i, u.name, trace, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// chaosHTTPStatements are what the requests run, alone or in a
// transaction.
var chaosHTTPStatements = []string{
	"SELECT 1",
	"SELECT pg_current_xact_id()",
	"SELECT set_config('search_path', 'chaos_schema', false)",
	"SELECT set_config('statement_timeout', '7s', false)",
	"CREATE TEMP TABLE IF NOT EXISTS chaos_tmp (x int)",
	"PREPARE chaos_p AS SELECT 2",
	"DECLARE chaos_c CURSOR WITH HOLD FOR SELECT 1",
	"LISTEN chaos",
	"SELECT pg_advisory_lock(4242)",
	"SELECT pg_try_advisory_lock(4343)",
	"SELECT 1/0",
	"SELECT pg_sleep(0.05)",
	"SELECT repeat('x', 100000) FROM generate_series(1, 20)",
	"COMMIT",
	"ROLLBACK",
	"BEGIN",
	"SAVEPOINT s1",
	"SET LOCAL work_mem = '8MB'",
	"SET search_path = chaos_set",
	"SELECT set_config('chaos.tenant', 'x', false)",
	"SELECT setseed(0.5)",
	"DISCARD ALL",
}

func chaosHTTPBody(rng *rand.Rand) (map[string]any, string) {
	pick := func() string { return chaosHTTPStatements[rng.IntN(len(chaosHTTPStatements))] }
	switch rng.IntN(4) {
	case 0, 1:
		s := pick()
		return map[string]any{"stmt": s}, fmt.Sprintf("stmt %q", s)
	case 2:
		var tx []map[string]any
		var names []string
		for n := 1 + rng.IntN(4); n > 0; n-- {
			s := pick()
			tx = append(tx, map[string]any{"stmt": s})
			names = append(names, s)
		}
		return map[string]any{"transaction": tx}, fmt.Sprintf("transaction %q", names)
	default:
		return map[string]any{"stmt": "SELECT set_config('search_path', $1, false)", "bulk_args": [][]any{{"chaos_bulk"}, {"chaos_bulk2"}}},
			"bulk set_config"
	}
}

// postSQL sends body as JSON to url (a /_sql address) from a test's own
// goroutine, with auth setting the request's credentials, and returns the
// status and the answer's bytes. Unlike httpDo it fails no test itself.
func postSQL(ctx context.Context, client *http.Client, url string, body any, auth func(*http.Request)) (int, []byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != nil {
		auth(req)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// basicAuth sets Basic credentials.
func basicAuth(user, password string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, password) }
}

// chaosHTTPRequest sends one request; any answer is fine but a server
// error of pgwarden's own (500) or a connection it broke.
func chaosHTTPRequest(client *http.Client, g *gateway, u testUser, body map[string]any, timeout time.Duration) error {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	status, out, err := postSQL(ctx, client, g.httpURL()+"/_sql?db=postgres", body, basicAuth(u.name, u.password))
	switch {
	case err != nil && timeout > 0:
		return nil // the client gave up, as it meant to
	case err != nil:
		return err
	case status >= 500 || status == 401 || status == 403:
		return fmt.Errorf("answered %d %s", status, out)
	}
	return nil
}

// probeFreshHTTPRequest checks that a request's session is a fresh one.
// A custom setting's placeholder may read as an empty string (see the
// README: DISCARD ALL cannot remove it), never as a value.
func probeFreshHTTPRequest(client *http.Client, g *gateway, u testUser) error {
	const check = `SELECT
	  pg_current_xact_id_if_assigned() IS NULL AND statement_timestamp() - now() < interval '200 ms' AS no_open_transaction,
	  (SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql) >= 0 AND (SELECT count(*) FROM pg_prepared_statements WHERE from_sql) = 0 AS no_prepared_statement,
	  (SELECT count(*) FROM pg_cursors WHERE name <> '') = 0 AS no_cursor,
	  (SELECT count(*) FROM pg_listening_channels()) = 0 AS no_listen,
	  (SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory') = 0 AS no_advisory_lock,
	  (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()) = 0 AS no_temp_table,
	  current_setting('search_path') = '"$user", public' AS default_search_path,
	  current_setting('statement_timeout') = '0' AS default_statement_timeout,
	  current_setting('work_mem') = '4MB' AS default_work_mem,
	  coalesce(current_setting('chaos.tenant', true), '') = '' AS no_tenant,
	  current_user = 'app_rw' AND session_user = 'app_rw' AS own_role`
	status, raw, err := postSQL(context.Background(), client, g.httpURL()+"/_sql?db=postgres", map[string]any{"stmt": check}, basicAuth(u.name, u.password))
	if err != nil {
		return err
	}
	if status != 200 {
		return fmt.Errorf("answered %d %s", status, raw)
	}
	var out struct {
		Cols []string `json:"cols"`
		Rows [][]any  `json:"rows"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Rows) != 1 || len(out.Rows[0]) != len(out.Cols) {
		return fmt.Errorf("answer %s: %v", raw, err)
	}
	var failed []string
	for i, v := range out.Rows[0] {
		if v != true {
			failed = append(failed, out.Cols[i])
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("the request's session is not a fresh one: %v are false", failed)
	}
	return nil
}

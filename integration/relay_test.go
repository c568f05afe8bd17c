package integration

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// relayCase is one of the relays a session can get.
type relayCase struct {
	name string
	loop bool // server.event_loop
	tls  bool // the client asks for TLS (relayed on goroutines)
}

var relays = []relayCase{{"event_loop=true", true, false}, {"event_loop=false", false, false}, {"tls", true, true}}

// start starts a gateway with trust for everyone whose sessions get this
// relay.
func (rc relayCase) start(t *testing.T) *gateway {
	t.Helper()
	return rc.startWith(t, gwOptions{})
}

// rawLogin logs alice in on a raw connection of this relay's kind and
// reads up to ReadyForQuery.
func (rc relayCase) rawLogin(t *testing.T, g *gateway) *rawClient {
	t.Helper()
	r := dialRaw(t, g.addr())
	if rc.tls {
		r.startTLS()
	}
	r.write(startupBytes(3, 0, "user", "alice", "database", "postgres"))
	for {
		if _, ok := r.receive().(*pgproto3.ReadyForQuery); ok {
			return r
		}
	}
}

// tryLogin logs alice in on a raw connection of this relay's kind and
// closes it: nil when the login got to ReadyForQuery, else its error.
func (rc relayCase) tryLogin(t *testing.T, g *gateway) *pgproto3.ErrorResponse {
	t.Helper()
	r := dialRaw(t, g.addr())
	defer r.conn.Close()
	if rc.tls {
		r.startTLS()
	}
	r.write(startupBytes(3, 0, "user", "alice", "database", "postgres"))
	for {
		switch m := r.receive().(type) {
		case *pgproto3.ReadyForQuery:
			return nil
		case *pgproto3.ErrorResponse:
			return m
		}
	}
}

// startWith is start with more configuration (o.server is added to).
func (rc relayCase) startWith(t *testing.T, o gwOptions) *gateway {
	t.Helper()
	server := fmt.Sprintf("event_loop = %v", rc.loop)
	if rc.loop && !rc.tls {
		// Every other test runs the default (one loop on two cores):
		// here sessions are spread over several.
		server += "\nevent_loops = 3"
	}
	o.server += "\n" + server
	if rc.tls {
		return startTLSGatewayIn(t, t.TempDir(), o, trustRules, nil)
	}
	return startGatewayWith(t, o, trustRules, nil)
}

// Plaintext sessions run in the event loops by default; event_loop = false
// relays them on goroutines, and every TLS session too (reading the TLS
// stream only once its socket is readable). Each relay keeps the same
// guarantees, proved here on each.
func TestBothRelaysKeepEveryGuarantee(t *testing.T) {
	for _, tc := range relays {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.start(t)
			ctx := context.Background()
			conn := g.connString("alice", "", "postgres")
			if tc.tls {
				conn = strings.Replace(conn, "sslmode=disable", "sslmode=require", 1)
			}

			// Large rows both ways, a COPY in and out.
			c := g.mustConnectString(conn)
			big := strings.Repeat("x", 3<<20)
			var got string
			if err := c.QueryRow(ctx, "SELECT $1::text || 'y'", big).Scan(&got); err != nil || got != big+"y" {
				t.Fatalf("a 3 MiB value came back as %d bytes: %v", len(got), err)
			}
			if _, err := c.Exec(ctx, "CREATE TEMP TABLE t (n int, s text)"); err != nil {
				t.Fatal(err)
			}
			var in bytes.Buffer
			for i := 0; i < 20000; i++ {
				fmt.Fprintf(&in, "%d\trow %d\n", i, i)
			}
			tag, err := c.PgConn().CopyFrom(ctx, bytes.NewReader(in.Bytes()), "COPY t FROM STDIN")
			if err != nil || tag.RowsAffected() != 20000 {
				t.Fatalf("COPY FROM: %v %v", tag, err)
			}
			var out bytes.Buffer
			if _, err := c.PgConn().CopyTo(ctx, &out, "COPY t TO STDOUT"); err != nil || !bytes.Equal(out.Bytes(), in.Bytes()) {
				t.Fatalf("COPY TO gave %d bytes, want %d: %v", out.Len(), in.Len(), err)
			}

			// A pipeline of many small queries in one write: over TLS many
			// records arrive in one read, and every answer must come back.
			batch := &pgx.Batch{}
			for i := 0; i < 2000; i++ {
				batch.Queue("SELECT $1::int + 1", i)
			}
			br := c.SendBatch(ctx, batch)
			for i := 0; i < 2000; i++ {
				var n int
				if err := br.QueryRow().Scan(&n); err != nil || n != i+1 {
					t.Fatalf("batch answer %d: %d, %v", i, n, err)
				}
			}
			if err := br.Close(); err != nil {
				t.Fatal(err)
			}

			// A cancel reaches the query and leaves the session usable.
			go func() {
				time.Sleep(300 * time.Millisecond)
				c.PgConn().CancelRequest(context.Background())
			}()
			_, err = c.Exec(ctx, "SELECT pg_sleep(30)")
			wantPgError(t, err, "57014", "canceling statement due to user request")
			if got := queryOne(t, c, "SELECT 'after cancel'"); got != "after cancel" {
				t.Fatal(got)
			}

			// The backend is reset and handed to the next client.
			if _, err := c.Exec(ctx, "DROP TABLE t"); err != nil {
				t.Fatal(err)
			}
			pid := backendPID(t, c)
			closeAndWait(c)
			c2 := g.mustConnectString(conn)
			if got := backendPID(t, c2); got != pid {
				t.Fatalf("backend not reused: %s then %s", pid, got)
			}
			closeAndWait(c2)

			// Many short sessions: no reply lost.
			lost, failed, err := shortSessions(t, conn, 200, 20)
			if lost != 0 || failed != 0 {
				t.Fatalf("of 200 sessions, %d replies were lost and %d logins failed (first error: %v)", lost, failed, err)
			}
		})
	}
}

// A client that writes more after its Terminate must not reach the backend
// that the next client gets: neither in the same write, nor in a later one
// while its backend is being handed back.
func TestNothingAfterTerminateReachesTheBackend(t *testing.T) {
	for _, tc := range relays {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.start(t)
			listener := g.mustConnect("alice", "", "postgres")
			ctx := context.Background()
			for i, later := range []bool{false, true} {
				channel := fmt.Sprintf("smuggle_%d", i)
				if _, err := listener.Exec(ctx, "LISTEN "+channel); err != nil {
					t.Fatal(err)
				}
				r := tc.rawLogin(t, g)
				// The NOTIFY before Terminate runs: it proves the listener
				// hears; the one after must never run.
				msgs := encodeMessages(t, &pgproto3.Query{String: "NOTIFY " + channel + ", 'before'"}, &pgproto3.Terminate{})
				smuggled := encodeMessages(t, &pgproto3.Query{String: "NOTIFY " + channel + ", 'after'"})
				if later {
					r.write(msgs)
					time.Sleep(20 * time.Millisecond)
					r.conn.Write(smuggled) // may fail: pgwarden may have closed already
				} else {
					r.write(append(msgs, smuggled...))
				}
				var heard []string
				for {
					wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
					n, err := listener.WaitForNotification(wctx)
					cancel()
					if err != nil {
						break
					}
					heard = append(heard, n.Payload)
				}
				r.conn.Close()
				if len(heard) != 1 || heard[0] != "before" {
					t.Fatalf("later write %v: the listener heard %q, want only \"before\"", later, heard)
				}
			}
		})
	}
}

// A client that leaves after an Execute it never followed with a Sync has
// work in an open implicit transaction, which PostgreSQL rolls back when
// the client goes. Its backend must not be reset and handed on: a reset
// sent as a simple query would commit that work. reset_query =
// "DEALLOCATE ALL" (which, unlike DISCARD ALL, runs inside that
// transaction) makes the difference visible.
func TestWorkAClientNeverSyncedIsRolledBack(t *testing.T) {
	for i, tc := range relays {
		t.Run(tc.name, func(t *testing.T) {
			table := fmt.Sprintf("unsynced_%d", i)
			if err := pg.Exec(fmt.Sprintf("DROP TABLE IF EXISTS %[1]s; CREATE TABLE %[1]s (x int); GRANT SELECT, INSERT ON %[1]s TO alice", table)); err != nil {
				t.Fatal(err)
			}
			g := tc.startWith(t, gwOptions{backend: `reset_query = "DEALLOCATE ALL"`})
			for _, flush := range []bool{false, true} {
				r := tc.rawLogin(t, g)
				msgs := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "INSERT INTO " + table + " VALUES (1)"}, &pgproto3.Bind{}, &pgproto3.Execute{}}
				if flush {
					// Flush: the backend answers, so the INSERT surely ran.
					r.write(encodeMessages(t, append(msgs, &pgproto3.Flush{})...))
					for {
						if _, ok := r.receive().(*pgproto3.CommandComplete); ok {
							break
						}
					}
					r.write(encodeMessages(t, &pgproto3.Terminate{}))
				} else {
					r.write(encodeMessages(t, append(msgs, &pgproto3.Terminate{})...))
				}
				r.conn.Close()
			}
			time.Sleep(300 * time.Millisecond)
			// Any backend the next clients get, reused or not.
			for j := 0; j < 3; j++ {
				c := g.mustConnect("alice", "", "postgres")
				if got := queryOne(t, c, "SELECT count(*)::text FROM "+table); got != "0" {
					t.Fatalf("%s rows committed that no client ever synced", got)
				}
				c.Close(context.Background())
			}
		})
	}
}

// A client may send its first query right behind its startup message,
// without waiting for ReadyForQuery (with trust, nothing comes between).
// Over TLS the query's record then arrives with the startup's, and the
// login reads both from the socket: the relay must pass on what TLS holds
// before it waits for the socket, which will not tell of it again.
func TestAQueryPipelinedBehindTheStartupIsAnswered(t *testing.T) {
	for _, tc := range relays {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.start(t)
			r := dialRaw(t, g.addr())
			hold := func(bool) {}
			if tc.tls {
				hold = r.startTLS()
			}
			hold(true)
			r.write(startupBytes(3, 0, "user", "alice", "database", "postgres"))
			r.write(encodeMessages(t, &pgproto3.Query{String: "SELECT 'pipelined'"}))
			hold(false)
			for {
				switch m := r.receive().(type) {
				case *pgproto3.DataRow:
					if string(m.Values[0]) != "pipelined" {
						t.Fatalf("row %q", m.Values[0])
					}
					return
				case *pgproto3.ErrorResponse:
					t.Fatalf("error %s: %s", m.Code, m.Message)
				}
			}
		})
	}
}

func encodeMessages(t *testing.T, msgs ...pgproto3.FrontendMessage) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// A backend that ends (pg_terminate_backend, idle_session_timeout, a
// PostgreSQL restart) ends its client's connection, as PostgreSQL's own
// close would: the client hears the FATAL and then EOF while it is only
// reading. A client that waits for the close (node-postgres's 'end'
// event, a pool's health check) must not wait for its own next write.
func TestAClientWhoseBackendEndsIsClosedWithoutWriting(t *testing.T) {
	for _, tc := range relays {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.start(t)
			r := tc.rawLogin(t, g)
			r.send(&pgproto3.Query{String: "SELECT pg_backend_pid()"})
			var pid string
			for {
				m := r.receive()
				if d, ok := m.(*pgproto3.DataRow); ok {
					pid = string(d.Values[0])
				}
				if _, ok := m.(*pgproto3.ReadyForQuery); ok {
					break
				}
			}
			if err := pg.Exec("SELECT pg_terminate_backend(" + pid + ")"); err != nil {
				t.Fatal(err)
			}
			r.conn.SetDeadline(time.Now().Add(10 * time.Second))
			r.expectError("57P01", "terminating connection due to administrator command")
			r.expectClosed()
		})
	}
}

// leaveMidStatement logs alice in on a raw connection of tc's relay with
// these startup parameters, sends sql, and closes the socket (no
// Terminate, no cancel) once PostgreSQL runs it, as a killed client
// leaves; it returns the backend's pid.
func leaveMidStatement(t *testing.T, tc relayCase, g *gateway, sql string, params ...string) int {
	t.Helper()
	return leaveMidQueries(t, tc, g, []string{sql}, params...)
}

// leaveMidQueries is leaveMidStatement with several Query messages sent
// at once; the socket closes once the backend runs any of them.
func leaveMidQueries(t *testing.T, tc relayCase, g *gateway, queries []string, params ...string) int {
	t.Helper()
	sql := strings.Join(queries, "; ")
	r := dialRaw(t, g.addr())
	if tc.tls {
		r.startTLS()
	}
	r.write(startupBytes(3, 0, append([]string{"user", "alice", "database", "postgres"}, params...)...))
	pid := 0
	for {
		m := r.receive()
		if k, ok := m.(*pgproto3.BackendKeyData); ok {
			pid = int(k.ProcessID)
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	var batch []byte
	for _, q := range queries {
		batch = append(batch, encodeMessages(t, &pgproto3.Query{String: q})...)
	}
	r.write(batch)
	for i := 0; ; i++ {
		var active bool
		if err := queryPostgres(t, "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1 AND state = 'active')", &active, pid); err != nil {
			t.Fatal(err)
		}
		if active {
			break
		}
		if i == 200 {
			t.Fatalf("%q never ran on backend %d", sql, pid)
		}
		time.Sleep(25 * time.Millisecond)
	}
	r.conn.Close()
	return pid
}

// backendGone waits (bounded) until PostgreSQL no longer has the pid.
func backendGone(t *testing.T, pid int, within time.Duration) bool {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var n int
		if err := queryPostgres(t, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &n, pid); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return true
		}
	}
	return false
}

// A client that leaves in the middle of a statement (killed, its network
// gone) leaves the statement to PostgreSQL, as a client connected directly
// does: pgwarden shuts its side of the backend connection and sends no
// cancel, so a statement that writes nothing runs to its end and an
// autocommit one stays committed, which is what the same client would get
// from PostgreSQL or PgBouncer. PostgreSQL notices the shut connection
// only when it reads or writes, or every client_connection_check_interval
// when that is set (README, The Postgres wire): with it, the backend ends
// within the interval, which shows that pgwarden really shut its
// connection rather than keep it, and the backend with it, for a client
// that is gone. A statement that sends more than its client took ends
// soon, as with a client connected directly, whose leaving makes
// PostgreSQL's writes fail.
func TestAClientThatLeavesMidStatementLeavesTheStatementToPostgreSQL(t *testing.T) {
	if err := pg.Exec("DROP TABLE IF EXISTS left_mid_statement; CREATE TABLE left_mid_statement (relay text); GRANT ALL ON left_mid_statement TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range relays {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.start(t)
			pid := leaveMidStatement(t, tc, g, fmt.Sprintf("INSERT INTO left_mid_statement SELECT '%s' FROM pg_sleep(1)", tc.name))
			if !backendGone(t, pid, 20*time.Second) {
				t.Fatalf("backend %d still runs 20 s after its client left during a 1 s statement", pid)
			}
			var n int
			if err := queryPostgres(t, "SELECT count(*) FROM left_mid_statement WHERE relay = $1", &n, tc.name); err != nil || n != 1 {
				t.Fatalf("the autocommit statement of a client that left: %d rows, %v; want it committed, as PostgreSQL commits it", n, err)
			}

			pid = leaveMidStatement(t, tc, g, "SELECT pg_sleep(60)", "options", "-c client_connection_check_interval=100ms")
			if !backendGone(t, pid, 20*time.Second) {
				t.Fatalf("backend %d still runs 20 s after its client left, with client_connection_check_interval = 100ms: pgwarden kept its connection open", pid)
			}

			// A result of 100 GB whose client left ends soon, as PostgreSQL's
			// failed writes would end it for a client connected directly:
			// pgwarden does not read it to its end.
			pid = leaveMidStatement(t, tc, g, "SELECT repeat('x', 1000) FROM generate_series(1, 100000000)")
			if !backendGone(t, pid, 20*time.Second) {
				t.Fatalf("backend %d still sends a result 20 s after its client left", pid)
			}
		})
	}
}

// A backend whose client left in the middle of a statement still counts
// in max_backend_connections until PostgreSQL ends it. Until December 2026
// pgwarden stopped counting it when it closed the socket, while the
// statement ran on: a user who started long statements and left, again
// and again, had more backends than the limit allows, up to PostgreSQL's
// max_connections, whose refusal then reaches everyone. The orphaned
// statement here waits for a lock the test holds, so that it ends when the
// test says.
func TestABackendWhoseClientLeftMidStatementCountsUntilItEnds(t *testing.T) {
	ctx := context.Background()
	for i, tc := range relays {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.startWith(t, gwOptions{backend: "max_backend_connections = 1\nconnect_timeout = \"1s\""})
			holder, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", pg.sockDir, pg.port))
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Close(ctx)
			lock := 4711 + i
			if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", lock); err != nil {
				t.Fatal(err)
			}
			// The client pipelines a quick query before it: the backend's
			// first answer is not its last.
			pid := leaveMidQueries(t, tc, g, []string{"SELECT 1", fmt.Sprintf("SELECT pg_advisory_lock(%d)", lock)})

			// The orphan holds the only backend: the next login waits its
			// connect_timeout and is refused.
			if e := tc.tryLogin(t, g); e == nil {
				t.Fatal("a login got in while the orphaned statement ran: its backend was not counted in max_backend_connections = 1")
			} else if e.Code != "53300" || e.Message != "too many backend connections" {
				t.Fatalf("got %s %q, want 53300", e.Code, e.Message)
			}

			// Its statement ends: PostgreSQL lets the backend go, and so
			// does pgwarden.
			if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", lock); err != nil {
				t.Fatal(err)
			}
			if !backendGone(t, pid, 20*time.Second) {
				t.Fatalf("backend %d still there 20 s after its statement could end", pid)
			}
			// The slot is given back as the backend's socket closes, which
			// may come a moment after PostgreSQL's own end.
			for try := 0; ; try++ {
				e := tc.tryLogin(t, g)
				if e == nil {
					break
				}
				if try == 5 {
					t.Fatalf("a login after the orphan ended: %s %s", e.Code, e.Message)
				}
			}
		})
	}
}

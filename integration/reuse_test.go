package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func backendPID(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	return queryOne(t, c, "SELECT pg_backend_pid()::text")
}

// closeAndWait closes a client and gives pgwarden a moment to reset and
// park its backend.
func closeAndWait(c *pgx.Conn) {
	c.Close(context.Background())
	time.Sleep(300 * time.Millisecond)
}

func TestAnIdleBackendIsResetAndReusedByTheNextClient(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true}, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	conn := g.connString("alice", "alice-Pass-1", "postgres") + " application_name=reuse-test"
	c1 := g.mustConnectString(conn)
	pid := backendPID(t, c1)
	ctx := context.Background()
	for _, sql := range []string{"SET search_path = pg_catalog", "SET application_name = 'changed'", "CREATE TEMP TABLE scratch (x int)", "PREPARE p AS SELECT 1"} {
		if _, err := c1.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	closeAndWait(c1)

	c2 := g.mustConnectString(conn)
	if got := backendPID(t, c2); got != pid {
		t.Fatalf("backend not reused: %s then %s", pid, got)
	}
	// DISCARD ALL left nothing of the previous session.
	if got := queryOne(t, c2, "SHOW search_path"); got != `"$user", public` {
		t.Fatalf("search_path survived: %s", got)
	}
	if got := queryOne(t, c2, "SELECT count(*)::text FROM pg_class WHERE relname = 'scratch' AND relpersistence = 't'"); got != "0" {
		t.Fatal("temp table survived")
	}
	if got := queryOne(t, c2, "SELECT count(*)::text FROM pg_prepared_statements WHERE name = 'p'"); got != "0" {
		t.Fatal("prepared statement survived")
	}
	// The client is told the truth about its session.
	if got := c2.PgConn().ParameterStatus("application_name"); got != "reuse-test" {
		t.Fatalf("ParameterStatus application_name = %q", got)
	}
	if got := queryOne(t, c2, "SHOW application_name"); got != "reuse-test" {
		t.Fatalf("application_name = %q", got)
	}
	// Other startup parameters: another backend.
	c3 := g.mustConnectString(g.connString("alice", "alice-Pass-1", "postgres") + " application_name=other")
	if got := backendPID(t, c3); got == pid {
		t.Fatal("a backend was shared across different startup parameters")
	}
	// Cancel still reaches the reused backend.
	go func() {
		time.Sleep(300 * time.Millisecond)
		c2.PgConn().CancelRequest(context.Background())
	}()
	_, err := c2.Exec(ctx, "SELECT pg_sleep(20)")
	wantPgError(t, err, "57014", "canceling statement due to user request")

	resp, err := http.Get(g.httpURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "pgwarden_backend_reused_total 1") || !strings.Contains(string(body), "pgwarden_backend_in_use 2") {
		t.Fatalf("pool metrics:\n%s", grepLines(string(body), "pgwarden_backend"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestABackendLeftInATransactionIsNeverReused(t *testing.T) {
	g := startGateway(t, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	c1 := g.mustConnect("alice", "alice-Pass-1", "postgres")
	pid := backendPID(t, c1)
	if _, err := c1.Exec(context.Background(), "BEGIN"); err != nil {
		t.Fatal(err)
	}
	closeAndWait(c1)
	c2 := g.mustConnect("alice", "alice-Pass-1", "postgres")
	if got := backendPID(t, c2); got == pid {
		t.Fatal("a backend left inside a transaction was reused")
	}
	// A client that vanishes without Terminate: not reused either.
	pid2 := backendPID(t, c2)
	c2.PgConn().Conn().Close()
	time.Sleep(300 * time.Millisecond)
	c3 := g.mustConnect("alice", "alice-Pass-1", "postgres")
	if got := backendPID(t, c3); got == pid2 {
		t.Fatal("a backend whose client vanished mid-stream was reused")
	}
}

func TestReuseOffOpensAFreshBackendEachTime(t *testing.T) {
	g := startGatewayWith(t, gwOptions{backend: "reuse = false"}, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	c1 := g.mustConnect("alice", "alice-Pass-1", "postgres")
	pid := backendPID(t, c1)
	closeAndWait(c1)
	c2 := g.mustConnect("alice", "alice-Pass-1", "postgres")
	if got := backendPID(t, c2); got == pid {
		t.Fatal("reuse = false reused a backend")
	}
}

func TestAParkedBackendThatDiedIsNotHandedOut(t *testing.T) {
	g := startGateway(t, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	c1 := g.mustConnect("alice", "alice-Pass-1", "postgres")
	pid := backendPID(t, c1)
	closeAndWait(c1)
	if err := pg.Exec("SELECT pg_terminate_backend(" + pid + ")"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	c2 := g.mustConnect("alice", "alice-Pass-1", "postgres")
	if got := queryOne(t, c2, "SELECT 'fresh'"); got != "fresh" {
		t.Fatal(got)
	}
}

// At max_backend_connections a login waits, within connect_timeout, for a
// backend to be released: it gets in when a session ends during its wait
// (that session's parked backend gives way), and is refused with 53300
// when none ends in time. Before, a login was refused at once unless a
// reset was already in flight, which lost logins in bursts of short
// sessions whose Terminate the relay had not read yet.
func TestMaxBackendConnections(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true, backend: "max_backend_connections = 2\nconnect_timeout = \"5s\""}, passwordRules,
		[]testUser{{name: "alice", password: "alice-Pass-1"}, {name: "bob", password: "bob-Pass-2"}})
	a := g.mustConnect("alice", "alice-Pass-1", "postgres")
	b := g.mustConnect("alice", "alice-Pass-1", "postgres")
	start := time.Now()
	_, err := g.connect("bob", "bob-Pass-2", "postgres")
	wantPgError(t, err, "53300", "too many backend connections")
	if waited := time.Since(start); waited < 4500*time.Millisecond {
		t.Fatalf("refused after %v: a login at the limit waits for a release within connect_timeout (5s)", waited)
	}
	// A session ends while bob's login waits (which /metrics and SHOW
	// POOLS show): bob gets in.
	type result struct {
		c   *pgx.Conn
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := g.connect("bob", "bob-Pass-2", "postgres")
		got <- result{c, err}
	}()
	for deadline := time.Now().Add(2500 * time.Millisecond); ; time.Sleep(20 * time.Millisecond) {
		if sampleValue(t, scrapeMetrics(t, g.httpURL()), "pgwarden_backend_waiting") == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pgwarden_backend_waiting never showed the waiting login")
		}
	}
	a.Close(context.Background())
	r := <-got
	if r.err != nil {
		t.Fatalf("a session ended during the wait, yet: %v", r.err)
	}
	defer r.c.Close(context.Background())
	if got := queryOne(t, r.c, "SELECT current_user"); got != "bob" {
		t.Fatal(got)
	}
	if v := sampleValue(t, scrapeMetrics(t, g.httpURL()), "pgwarden_backend_waiting"); v != 0 {
		t.Fatalf("pgwarden_backend_waiting %v after the wait", v)
	}
	_ = b
}

// A burst of short sessions three times max_backend_connections wide is
// served by waiting for backends to be released, with reuse on and off:
// no login is refused (the bound itself: TestMaxBackendConnections and
// the HTTP one).
func TestABurstWiderThanTheBackendLimitWaitsInsteadOfFailing(t *testing.T) {
	for _, reuse := range []bool{true, false} {
		t.Run(fmt.Sprintf("reuse=%v", reuse), func(t *testing.T) {
			const limit = 6
			g := startGatewayWith(t, gwOptions{backend: fmt.Sprintf("reuse = %v\nmax_backend_connections = %d\nconnect_timeout = \"20s\"", reuse, limit)}, trustRules, nil)
			lost, failed, err := shortSessions(t, g.connString("alice", "", "postgres"), 120, 3*limit)
			if lost != 0 || failed != 0 {
				t.Fatalf("of 120 sessions, 18 at a time against a limit of %d: %d replies lost, %d logins failed (first error: %v)", limit, lost, failed, err)
			}
		})
	}
}

// A client that gives up while its login waits at max_backend_connections
// takes nothing when a backend is released: the parked backend goes to the
// next client, not to a socket nobody reads (which would lose it), and no
// backend login is made for it. The audit log says why it ended.
func TestAClientThatLeavesWhileWaitingForABackendTakesNone(t *testing.T) {
	g := startGatewayWith(t, gwOptions{backend: "max_backend_connections = 1\nconnect_timeout = \"10s\""}, trustRules, nil)
	hold := g.mustConnect("alice", "", "postgres")
	pid := backendPID(t, hold)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err := pgx.Connect(ctx, g.connString("alice", "", "postgres"))
	cancel()
	if err == nil {
		t.Fatal("a login at the limit got in while the only backend was in use")
	}
	hold.Close(context.Background())
	g.waitLog("the client left while its login waited for a backend", 1)
	c := g.mustConnect("alice", "", "postgres")
	if got := backendPID(t, c); got != pid {
		t.Fatalf("the parked backend (pid %s) was lost to the client that left: the next login got pid %s", pid, got)
	}
}

// The [auth_query] pool's connections count against
// max_backend_connections: pgwarden as a whole stays within it, so the
// clients' backends get the limit less those two.
func TestMaxBackendConnectionsCountsTheAuthQueryPool(t *testing.T) {
	g := startGatewayWith(t, gwOptions{backend: "max_backend_connections = 4\nconnect_timeout = \"1s\""}, fmt.Sprintf(`
[auth_query]
mode = "lookup"
database = "postgres"
user = "postgres"
password = %q

[[hba]]
method = "scram-sha-256"
`, backendPassword), []testUser{{name: "alice", password: "alice-Pass-1"}, {name: "bob", password: "bob-Pass-2"}})
	// A name the users file does not hold is looked up: the pool connects.
	_, err := g.connect("nobody_anywhere", "some-Pass-1", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "nobody_anywhere"`)
	a := g.mustConnect("alice", "alice-Pass-1", "postgres")
	b := g.mustConnect("alice", "alice-Pass-1", "postgres")
	_, err = g.connect("bob", "bob-Pass-2", "postgres")
	wantPgError(t, err, "53300", "too many backend connections")
	var n int
	if err := queryPostgres(t, "SELECT count(*) FROM pg_stat_activity WHERE usename IN ('alice', 'bob') OR application_name = 'pgwarden-auth-query'", &n); err != nil {
		t.Fatal(err)
	}
	if n > 4 {
		t.Fatalf("pgwarden holds %d backend connections, over max_backend_connections = 4", n)
	}
	_, _ = a, b
}

// A backend an event loop parks is handed back as a file of Go's poller,
// not a net.TCPConn (see attachFD): a TLS session, relayed on goroutines,
// can get it next, carry large rows and a cancel over it, and give it back
// to a plaintext session in a loop.
func TestABackendParkedByAnEventLoopServesATLSSessionAndComesBack(t *testing.T) {
	g := startTLSGatewayIn(t, t.TempDir(), gwOptions{}, trustRules, nil)
	plain := g.connString("alice", "", "postgres")
	overTLS := strings.Replace(plain, "sslmode=disable", "sslmode=require", 1)
	ctx := context.Background()

	c1 := g.mustConnectString(plain)
	pid := backendPID(t, c1)
	if _, err := c1.Exec(ctx, "SET search_path = pg_catalog"); err != nil {
		t.Fatal(err)
	}
	closeAndWait(c1)

	c2 := g.mustConnectString(overTLS)
	if got := backendPID(t, c2); got != pid {
		t.Fatalf("backend not reused by the TLS session: %s then %s", pid, got)
	}
	if got := queryOne(t, c2, "SHOW search_path"); got != `"$user", public` {
		t.Fatalf("search_path survived: %s", got)
	}
	big := strings.Repeat("y", 3<<20)
	var n int
	if err := c2.QueryRow(ctx, "SELECT length($1::text || repeat('z', 1 << 20))", big).Scan(&n); err != nil || n != 4<<20 {
		t.Fatalf("large row over the reused backend: %d %v", n, err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		c2.PgConn().CancelRequest(context.Background())
	}()
	_, err := c2.Exec(ctx, "SELECT pg_sleep(20)")
	wantPgError(t, err, "57014", "canceling statement due to user request")
	closeAndWait(c2)

	c3 := g.mustConnectString(plain)
	if got := backendPID(t, c3); got != pid {
		t.Fatalf("backend not reused after the TLS session: %s then %s", pid, got)
	}
	if got := queryOne(t, c3, "SELECT 6 * 7"); got != "42" {
		t.Fatalf("answer %q", got)
	}
	c3.Close(ctx)
}

// A reset that fails leaves the backend unfit for anyone: it is closed,
// whichever relay carried the session.
func TestABackendWhoseResetFailsIsNeverHandedOut(t *testing.T) {
	for _, tc := range relays {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.startWith(t, gwOptions{backend: `reset_query = "SELECT 1/0"`})
			conn := g.connString("alice", "", "postgres")
			if tc.tls {
				conn = strings.Replace(conn, "sslmode=disable", "sslmode=require", 1)
			}
			c1 := g.mustConnectString(conn)
			pid := backendPID(t, c1)
			closeAndWait(c1)
			c2 := g.mustConnectString(conn)
			defer c2.Close(context.Background())
			if got := backendPID(t, c2); got == pid {
				t.Fatalf("backend %s handed out again after its reset failed", pid)
			}
			if got := queryOne(t, c2, "SELECT count(*)::text FROM pg_stat_activity WHERE pid = "+pid); got != "0" {
				t.Fatalf("backend %s still open after its reset failed", pid)
			}
		})
	}
}

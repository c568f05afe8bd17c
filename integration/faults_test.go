package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

func TestABackendKilledMidQueryGivesTheClientAnError(t *testing.T) {
	g := startGateway(t, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	c := g.mustConnect("alice", "alice-Pass-1", "postgres")
	pid := backendPID(t, c)
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), "SELECT pg_sleep(30)")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := pg.Exec("SELECT pg_terminate_backend(" + pid + ")"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the query survived its backend")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client hangs after its backend was killed")
	}
	// pgwarden keeps serving.
	c2 := g.mustConnect("alice", "alice-Pass-1", "postgres")
	queryOne(t, c2, "SELECT 1")
}

func TestASlowBackendAtConnectDelaysOnlyItsOwnClients(t *testing.T) {
	// A "backend" that accepts and never says a word.
	port := localServer(t, func(net.Conn) {})
	g := startGatewayWith(t, gwOptions{backend: `connect_timeout = "2s"`}, passwordRules+fmt.Sprintf(`
[[databases]]
name = "slow"
backend_dbname = "postgres"
port = %d
`, port), []testUser{{name: "alice", password: "alice-Pass-1"}})
	slow := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := g.connect("alice", "alice-Pass-1", "slow")
		slow <- err
	}()
	time.Sleep(200 * time.Millisecond)
	c := g.mustConnect("alice", "alice-Pass-1", "postgres")
	queryOne(t, c, "SELECT 1")
	select {
	case <-slow:
		t.Fatal("the slow backend answered before the healthy one served")
	default:
	}
	err := <-slow
	wantPgError(t, err, "08006", "could not connect to the backend server")
	if time.Since(start) < 2*time.Second {
		t.Fatal("gave up before connect_timeout")
	}
}

// auth_timeout bounds authentication, as PostgreSQL's
// authentication_timeout does: a client that authenticated in time is not
// failed with "authentication timeout" because its backend login (here
// 1.5 s behind a delaying hop, against auth_timeout = 1 s) took longer.
// The backend phase has its own bound, connect_timeout.
func TestASlowBackendLoginAfterAuthenticationIsNotAnAuthenticationTimeout(t *testing.T) {
	port := localServer(t, func(c net.Conn) {
		defer c.Close()
		time.Sleep(1500 * time.Millisecond)
		b, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", pg.port))
		if err != nil {
			return
		}
		defer b.Close()
		go io.Copy(b, c)
		io.Copy(c, b)
	})
	g := startGatewayWith(t, gwOptions{server: `auth_timeout = "1s"`, backend: `connect_timeout = "10s"`}, passwordRules+fmt.Sprintf(`
[[databases]]
name = "delayed"
backend_dbname = "postgres"
port = %d
`, port), []testUser{{name: "alice", password: "alice-Pass-1"}})
	c := g.mustConnect("alice", "alice-Pass-1", "delayed")
	queryOne(t, c, "SELECT 1")
}

// localServer listens on a free loopback port and hands each connection
// to serve on a goroutine of its own: a stand-in backend or a hop in front
// of one. The listener and every connection it accepted close when the
// test ends. It returns the port.
func localServer(t *testing.T, serve func(c net.Conn)) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go serve(c)
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestAnHTTPRequestAfterItsPooledBackendWasTerminatedIsServed: a backend
// that ends while its connection sits in an HTTP pool (a restart, a
// failover, pg_terminate_backend, idle_session_timeout) leaves its FATAL
// and its close in the socket. Until December 2026 the next request was
// sent there and answered with that error (500 57P01 "terminating
// connection due to administrator command") though its statement never
// ran, once per pooled connection; now the pool looks at the socket first
// and takes a fresh connection.
func TestAnHTTPRequestAfterItsPooledBackendWasTerminatedIsServed(t *testing.T) {
	g := startHTTPGateway(t, `default_database = "postgres"`, httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	auth := basic("alice", "alice-Pass-1")
	pidOf := func() string {
		t.Helper()
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql", `{"stmt": "SELECT pg_backend_pid()"}`, auth)
		if status != 200 {
			t.Fatalf("%d %v", status, out)
		}
		return fmt.Sprint(out["rows"].([]any)[0].([]any)[0])
	}
	for round := 0; round < 3; round++ {
		pid := pidOf()
		if err := pg.Exec("SELECT pg_terminate_backend(" + pid + ", 5000)"); err != nil {
			t.Fatal(err)
		}
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql", `{"stmt": "SELECT pg_backend_pid()"}`, auth)
		if status != 200 {
			t.Fatalf("round %d: the request after its pooled backend %s ended: %d %v", round, pid, status, out)
		}
		if got := fmt.Sprint(out["rows"].([]any)[0].([]any)[0]); got == pid {
			t.Fatalf("round %d: served by the terminated backend %s", round, pid)
		}
	}
}

// TestAnHTTPStatementWhoseBackendEndsIsABadGateway: a backend that ends the
// session under a running statement (FATAL 57P01 here) is no fault of the
// request: 502 with the backend's code and words, as for a connection that
// broke. It was 400, the status of the request's own SQL errors.
func TestAnHTTPStatementWhoseBackendEndsIsABadGateway(t *testing.T) {
	g := startHTTPGateway(t, `default_database = "postgres"`, httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	auth := basic("alice", "alice-Pass-1")
	type answer struct {
		status int
		out    map[string]any
	}
	done := make(chan answer, 1)
	go func() {
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql", `{"stmt": "SELECT pg_sleep(30) AS to_be_terminated"}`, auth)
		done <- answer{status, out}
	}()
	var pid int
	for i := 0; ; i++ {
		err := queryPostgres(t, "SELECT pid FROM pg_stat_activity WHERE query LIKE '%to_be_terminated%' AND pid <> pg_backend_pid()", &pid)
		if err == nil {
			break
		}
		if i == 100 {
			t.Fatalf("the statement never reached the backend: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := pg.Exec(fmt.Sprintf("SELECT pg_terminate_backend(%d)", pid)); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-done:
		if a.status != http.StatusBadGateway || errCode(a.out) != "57P01" {
			t.Fatalf("a statement whose backend ended: %d %v, want 502 57P01", a.status, a.out)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no answer after the backend ended")
	}
	if status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql", `{"stmt": "SELECT 1"}`, auth); status != 200 {
		t.Fatalf("the next request: %d %v", status, out)
	}
}

// TestABackendThatCannotTakeASessionNowIsUnavailableOverHTTP: PostgreSQL
// refusing the login for want of a connection slot (here the role's
// CONNECTION LIMIT, 53300) is 503 with its code and words, as pgwarden's
// own max_backend_connections is, not 400: the request was not at fault
// and a later try may pass. A database that does not exist stays 400.
func TestABackendThatCannotTakeASessionNowIsUnavailableOverHTTP(t *testing.T) {
	if err := pg.Exec(fmt.Sprintf("DROP ROLE IF EXISTS no_slots; CREATE ROLE no_slots LOGIN PASSWORD '%s' CONNECTION LIMIT 0", backendPassword)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Exec("DROP ROLE IF EXISTS no_slots") })
	g := startHTTPGateway(t, `default_database = "postgres"`, httpRules, []testUser{
		{name: "alice", password: "alice-Pass-1", extra: "backend_user = \"no_slots\"\n"},
		{name: "bob", password: "bob-Pass-2"},
	})
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql", `{"stmt": "SELECT 1"}`, basic("alice", "alice-Pass-1"))
	if status != http.StatusServiceUnavailable || errCode(out) != "53300" {
		t.Fatalf("a role at its connection limit: %d %v, want 503 53300", status, out)
	}
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=no_such_database", `{"stmt": "SELECT 1"}`, basic("bob", "bob-Pass-2"))
	if status != http.StatusBadRequest || errCode(out) != "3D000" {
		t.Fatalf("a database that does not exist: %d %v, want 400 3D000", status, out)
	}
}

// TestAStatementPastTheHTTPTimeoutIsAnsweredAsTheBackendEndedIt: when
// http.statement_timeout passes, pgwarden asks the backend to cancel and
// answers what the backend did. Here every commit waits for a synchronous
// standby that never comes; PostgreSQL does not undo a commit on a cancel
// (it warns and answers COMMIT), so these requests committed, and the
// client hears 200 as a client of PostgreSQL's own would. pgwarden used to
// close the connection at the deadline and answer 57014 "canceling
// statement" for rows that stayed committed: a client that retried wrote
// them twice. A statement the backend does cancel is still 57014, and is
// not left running.
func TestAStatementPastTheHTTPTimeoutIsAnsweredAsTheBackendEndedIt(t *testing.T) {
	own := ownCluster(t)
	for _, sql := range []string{
		"CREATE TABLE timeout_t (a int); GRANT ALL ON timeout_t TO alice",
		"ALTER SYSTEM SET synchronous_standby_names = 'nobody'",
		"SELECT pg_reload_conf()",
	} {
		if err := own.Exec(sql); err != nil {
			t.Fatal(err)
		}
	}
	g := startGatewayWith(t, gwOptions{http: true, backendPort: own.port, httpSection: "default_database = \"postgres\"\nstatement_timeout = \"1s\""},
		httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	auth := basic("alice", "alice-Pass-1")
	for _, body := range []string{
		`{"stmt": "INSERT INTO timeout_t VALUES (1)"}`,
		`{"transaction": [{"stmt": "INSERT INTO timeout_t VALUES (2)"}]}`,
		`{"stmt": "INSERT INTO timeout_t VALUES ($1)", "bulk_args": [[3]]}`,
	} {
		if status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql", body, auth); status != 200 {
			t.Fatalf("%s, committed while its standby was awaited: %d %v, want 200", body, status, out)
		}
	}
	for _, body := range []string{
		`{"stmt": "SELECT pg_sleep(30)"}`,
		`{"transaction": [{"stmt": "INSERT INTO timeout_t VALUES (4)"}, {"stmt": "SELECT pg_sleep(30)"}]}`,
	} {
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql", body, auth)
		if status != 400 || errCode(out) != "57014" || errMessage(out) != "canceling statement due to http.statement_timeout" {
			t.Fatalf("%s: %d %v, want 400 57014 canceling statement due to http.statement_timeout", body, status, out)
		}
	}
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql",
		`{"stmt": "SELECT (SELECT string_agg(a::text, ',' ORDER BY a) FROM timeout_t), (SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid())"}`, auth)
	if status != 200 || fmt.Sprint(out["rows"]) != "[[1,2,3 0]]" {
		t.Fatalf("rows and sleeping statements left: %d %v, want [[1,2,3 0]]", status, out)
	}
}

// TestABackendSilentAfterTheCancelLeavesTheOutcomeUnknown: a backend that
// answers neither the statement nor its cancel within connect_timeout
// after http.statement_timeout is given up, and the answer says what
// pgwarden knows: 504 08007, the statement may or may not have taken
// effect (not 57014, which says it was canceled).
func TestABackendSilentAfterTheCancelLeavesTheOutcomeUnknown(t *testing.T) {
	hop := newFreezableHop(t, pg.port)
	hop.freezeOnceAt([]byte("frozen_on_the_way"))
	g := startGatewayWith(t, gwOptions{http: true, backendPort: hop.port, backend: `connect_timeout = "1s"`,
		httpSection: "default_database = \"postgres\"\nstatement_timeout = \"1s\""},
		httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql", `{"stmt": "SELECT 'frozen_on_the_way'"}`, basic("alice", "alice-Pass-1"))
	if status != http.StatusGatewayTimeout || errCode(out) != "08007" {
		t.Fatalf("a backend silent after the cancel: %d %v, want 504 08007", status, out)
	}
}

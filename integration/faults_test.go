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

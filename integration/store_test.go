package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const storeSection = `
[store]
kind = "postgres"
database = "pgwarden_store_db"
user = "pgwarden_store"
password = "store-Pass-9"
`

// TestTwoInstancesShareThePostgreSQLStore: the schema is made and migrated
// by store init, a users file moved in by store import; a password changed
// with pgwarden user passwd (or on one instance) is refused by the other
// within a second; a store out of reach refuses logins (fail closed) until
// it is back; a schema of another version refuses to start.
func TestTwoInstancesShareThePostgreSQLStore(t *testing.T) {
	freshStore(t)
	rules := storeSection + "\n[[hba]]\nmethod = \"scram-sha-256\"\n"
	a := newGateway(t, gwOptions{server: "peer_id = 1"}, rules)
	cfg := a.configPath()

	// store init is idempotent; import moves a users file in.
	out, errOut, code := runCLI(t, "", "store", "init", "-c", cfg)
	if code != 0 || !strings.Contains(out, "from version 0 to 2") {
		t.Fatalf("store init: %d %s %s", code, out, errOut)
	}
	if out, _, code := runCLI(t, "", "store", "init", "-c", cfg); code != 0 || !strings.Contains(out, "at version 2 already") {
		t.Fatalf("store init again: %d %s", code, out)
	}
	usersFile := filepath.Join(t.TempDir(), "import.toml")
	writeFile(t, usersFile, usersTOML(t, []testUser{{name: "alice", password: "alice-Pass-1"}, {name: "bob", password: "bob-Pass-2"},
		{name: "root", password: "root-Admin-1", extra: `roles = ["admin"]` + "\n"}}))
	if _, errOut, code := runCLI(t, "", "store", "import", "-c", cfg, usersFile); code != 0 || !strings.Contains(errOut, "imported 3 users") {
		t.Fatalf("store import: %d %s", code, errOut)
	}
	if out, _, _ := runCLI(t, "", "user", "list", "-c", cfg); !strings.Contains(out, "alice") || !strings.Contains(out, "bob") {
		t.Fatalf("user list from the store:\n%s", out)
	}

	a.start()
	b := startGatewayWith(t, gwOptions{server: "peer_id = 2"}, rules, nil)
	for _, g := range []*gateway{a, b} {
		c := g.mustConnect("alice", "alice-Pass-1", "postgres")
		c.Close(context.Background())
	}
	// An unknown name is challenged alike by both (the store's mock key).
	if sa, sb := scramSalt(t, a, "nobody"), scramSalt(t, b, "nobody"); sa != sb {
		t.Fatalf("two instances of one store challenge an unknown name with %q and %q", sa, sb)
	}

	// Logins are decided from memory: they do not touch the store.
	since := storeClock(t)
	for i := 0; i < 20; i++ {
		c := a.mustConnect("bob", "bob-Pass-2", "postgres")
		c.Close(context.Background())
	}
	if n := storeQueriesSince(t, since); n != 0 {
		t.Fatalf("20 logins ran statements on %d of the store's connections", n)
	}

	// A password change reaches both instances within a second.
	if _, errOut, code := runCLI(t, "alice-Pass-NEW\n", "user", "passwd", "alice", "--password-stdin", "-c", cfg); code != 0 {
		t.Fatalf("user passwd: %s", errOut)
	}
	noteSecret("alice-Pass-NEW")
	start := time.Now()
	for _, g := range []*gateway{a, b} {
		waitFor(t, time.Second, "the old password is refused", func() bool { return !g.logsIn("alice", "alice-Pass-1") })
		c := g.mustConnect("alice", "alice-Pass-NEW", "postgres")
		c.Close(context.Background())
	}
	t.Logf("the new password was in force on both instances %v after the change", time.Since(start).Round(time.Millisecond))

	// The admin console of A writes to the store too; B follows.
	if out, err := psql(t, a.connString("root", "root-Admin-1", "pgwarden"), "ALTER USER carol_s PASSWORD 'carol-Pass-5'"); err == nil || !strings.Contains(out, "carol_s") {
		t.Fatalf("ALTER USER of an unknown user: %v %s", err, out)
	}
	if out, err := psql(t, a.connString("root", "root-Admin-1", "pgwarden"), "CREATE USER erin WITH PASSWORD 'erin-Pass-6'"); err != nil {
		t.Fatalf("CREATE USER on A: %v %s", err, out)
	}
	noteSecret("erin-Pass-6")
	waitFor(t, time.Second, "a user made on A's admin console logs in on B", func() bool {
		c, err := b.connect("erin", "erin-Pass-6", "postgres")
		if err == nil {
			c.Close(context.Background())
		}
		return err == nil
	})

	// The store out of reach: logins are refused (57P03), not answered
	// from a cache that may be stale; back, they work again. A third
	// instance serves HTTP, for its /readyz.
	h := startGatewayWith(t, gwOptions{http: true}, rules, nil)
	if err := pg.Exec("ALTER ROLE pgwarden_store NOLOGIN"); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'pgwarden_store'"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "logins are refused while the store is out of reach", func() bool {
		_, err := b.connect("bob", "bob-Pass-2", "postgres")
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "57P03" && strings.Contains(pe.Message, "user store is unreachable")
	})
	b.waitLog("lost the user store's LISTEN connection", 1)
	h.waitLog("lost the user store's LISTEN connection", 1)
	// Meanwhile /readyz says so, for balancers to send clients elsewhere
	// (it answered 200 all the while before December 2026).
	if s, _, out := httpDo(t, "GET", h.httpURL()+"/readyz", "", nil); s != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(out["status"]), "user store") {
		t.Fatalf("readyz while every login is refused: %d %v", s, out)
	}
	if err := pg.Exec("ALTER ROLE pgwarden_store LOGIN"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "logins work again once the store is back", func() bool {
		c, err := b.connect("bob", "bob-Pass-2", "postgres")
		if err == nil {
			c.Close(context.Background())
		}
		return err == nil
	})
	waitFor(t, 2*time.Second, "readyz is 200 again", func() bool {
		s, _, _ := httpDo(t, "GET", h.httpURL()+"/readyz", "", nil)
		return s == http.StatusOK
	})

	// A schema of another version: refused, naming what to run.
	if err := pg.ExecIn("pgwarden_store_db", "UPDATE pgwarden.schema_version SET version = 99"); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runCLI(t, "", "check", "-c", cfg)
	if code != 1 || !strings.Contains(errOut, "schema version 99 is newer than this binary's 2") {
		t.Fatalf("check with a newer schema: %d %s", code, errOut)
	}
	pg.ExecIn("pgwarden_store_db", "UPDATE pgwarden.schema_version SET version = 2")
}

// freshStore makes the store's role and database anew for one test.
func freshStore(t *testing.T) {
	t.Helper()
	noteSecret("store-Pass-9")
	for _, stmt := range []string{
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'pgwarden_store_db'",
		"DROP DATABASE IF EXISTS pgwarden_store_db", "DROP ROLE IF EXISTS pgwarden_store",
		"CREATE ROLE pgwarden_store LOGIN PASSWORD 'store-Pass-9'",
		"CREATE DATABASE pgwarden_store_db OWNER pgwarden_store",
	} {
		if err := pg.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		pg.Exec("ALTER ROLE pgwarden_store LOGIN")
		pg.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'pgwarden_store_db'")
		pg.Exec("DROP DATABASE IF EXISTS pgwarden_store_db")
		pg.Exec("DROP ROLE IF EXISTS pgwarden_store")
	})
}

// fillStore makes g's store schema (store init) and moves users into it
// (store import), before g starts.
func (g *gateway) fillStore(t *testing.T, users []testUser) {
	t.Helper()
	if _, errOut, code := runCLI(t, "", "store", "init", "-c", g.configPath()); code != 0 {
		t.Fatalf("store init: %s", errOut)
	}
	usersFile := filepath.Join(t.TempDir(), "import.toml")
	writeFile(t, usersFile, usersTOML(t, users))
	if _, errOut, code := runCLI(t, "", "store", "import", "-c", g.configPath(), usersFile); code != 0 {
		t.Fatalf("store import: %s", errOut)
	}
}

// TestConsoleSessionsAndTheThrottleAreSharedThroughTheStore: a console
// login form served by B posted to A works, and the session it makes holds
// on B (plain round robin); a wrong password on A holds up the next
// attempt of that address and user on B.
func TestConsoleSessionsAndTheThrottleAreSharedThroughTheStore(t *testing.T) {
	freshStore(t)
	rules := storeSection + "\n[[hba]]\nmethod = \"scram-sha-256\"\n"
	o := gwOptions{http: true, httpSection: "default_database = \"postgres\"", throttle: "failure_delay = \"2s\"\nmax_delay = \"4s\""}
	a := newGateway(t, o, rules)
	a.fillStore(t, []testUser{{name: "alice", password: "alice-Pass-1"}, {name: "bob", password: "bob-Pass-2"}})
	a.start()
	b := startGatewayWith(t, o, rules, nil)

	// The login form of B, posted to A (round robin), then the console
	// page from B.
	cc := newConsoleClient(t, b.httpURL(), nil)
	csrf := cc.loginForm()
	cc.base, cc.origin = a.httpURL(), a.httpURL()
	r := cc.post("/login", url.Values{"csrf": {csrf}, "user": {"alice"}, "password": {"alice-Pass-1"}}, nil)
	if r.status != http.StatusSeeOther {
		t.Fatalf("login form of B posted to A: %d\n%s", r.status, r.body)
	}
	cc.base, cc.origin = b.httpURL(), b.httpURL()
	if page := cc.get("/"); page.status != 200 || !strings.Contains(page.body, "alice") || strings.Contains(page.body, `action="/login"`) {
		t.Fatalf("the session made on A does not hold on B: %d\n%s", page.status, page.body)
	}

	// A forged throttle event (any role of the store's database can
	// NOTIFY) is ignored: it would hold up a real user's logins.
	if err := pg.ExecIn("pgwarden_store_db", `SELECT pg_notify('pgwarden_throttle', '{"i":"x","f":true,"a":"127.0.0.1","u":"alice","m":"00"}')`); err != nil {
		t.Fatal(err)
	}
	b.waitLog("ignored throttle events not sealed with the store's key", 1)
	start0 := time.Now()
	c0, err := b.connect("alice", "alice-Pass-1", "postgres")
	if err != nil {
		t.Fatal(err)
	}
	c0.Close(context.Background())
	if el := time.Since(start0); el > time.Second {
		t.Fatalf("a forged throttle event held alice up for %v", el)
	}

	// A role that can connect to the store's database listens in.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	listener, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=pgwarden_store_db sslmode=disable", pg.sockDir, pg.port))
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(context.Background())
	if _, err := listener.Exec(ctx, "LISTEN pgwarden_throttle"); err != nil {
		t.Fatal(err)
	}

	// A wrong password on A: B makes the next attempt of the pair wait.
	if _, err := a.connect("bob", "wrong-wrong", "postgres"); err == nil {
		t.Fatal("a wrong password logged in")
	}
	time.Sleep(200 * time.Millisecond) // the event crosses the store
	start := time.Now()
	c, err := b.connect("bob", "bob-Pass-2", "postgres")
	if err != nil {
		t.Fatal(err)
	}
	c.Close(context.Background())
	if el := time.Since(start); el < 1500*time.Millisecond {
		t.Fatalf("B let bob's next attempt in after %v: A's failure did not count there", el)
	}

	// The listener kept A's real failure event. It learns neither the user
	// nor the address from it, and sending it again holds no one up: until
	// December 2026 the events were signed but could be replayed, so that a
	// kept failure held the user up again at will and a kept success wiped
	// a guesser's backoff on every instance.
	n, err := listener.WaitForNotification(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(n.Payload, "bob") || strings.Contains(n.Payload, "127.0.0.1") {
		t.Fatalf("a listener on the store reads the throttle event: %s", n.Payload)
	}
	if err := pg.ExecIn("pgwarden_store_db", fmt.Sprintf("SELECT pg_notify('pgwarden_throttle', '%s')", strings.ReplaceAll(n.Payload, "'", "''"))); err != nil {
		t.Fatal(err)
	}
	b.waitLog("ignored throttle events seen before or too old", 1)
	start = time.Now()
	c, err = b.connect("bob", "bob-Pass-2", "postgres")
	if err != nil {
		t.Fatal(err)
	}
	c.Close(context.Background())
	if el := time.Since(start); el > time.Second {
		t.Fatalf("a replayed failure event held bob up for %v", el)
	}
}

// storeClock is the database server's clock now.
func storeClock(t *testing.T) time.Time {
	t.Helper()
	var now time.Time
	if err := queryPostgres(t, "SELECT clock_timestamp()", &now); err != nil {
		t.Fatal(err)
	}
	return now
}

// storeQueriesSince counts the store's client connections that began or
// ran a statement since the given server time. pg_stat_activity is live,
// unlike pg_stat_database, which idle backends report up to 10 s late.
// The LISTEN connection is left out: it asks the store an empty question
// after each second of silence, so a count over more than a second (20
// logins on a loaded machine) found it, and the test failed in CI.
func storeQueriesSince(t *testing.T, since time.Time) int {
	t.Helper()
	var n int
	if err := queryPostgres(t, `SELECT count(*) FROM pg_stat_activity
		WHERE usename = 'pgwarden_store' AND backend_type = 'client backend'
		AND application_name <> 'pgwarden-store-listen'
		AND (backend_start >= $1 OR state_change >= $1)`, &n, since); err != nil {
		t.Fatal(err)
	}
	return n
}

func queryPostgres(t *testing.T, sql string, dest any, args ...any) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", pg.sockDir, pg.port))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, sql, args...).Scan(dest)
}

// TestAnInstanceSilentlyCutOffFromTheStoreRefusesLogins: a network that
// drops packets (no reset, no FIN) between instance B and the store leaves
// B's LISTEN connection open and silent, and a password changed meanwhile
// on A never reaches B. B must notice the silence and fail closed (57P03)
// rather than go on accepting the old password; once the store answers
// again, B reloads, serves the new one and ends the session alice opened
// with the old one.
func TestAnInstanceSilentlyCutOffFromTheStoreRefusesLogins(t *testing.T) {
	hop := newFreezableHop(t, pg.port)
	b, cfg := instanceBehindHop(t, hop, "")
	live := b.mustConnect("alice", "alice-Pass-1", "postgres")
	queryOne(t, live, "SELECT 1")

	hop.freeze()
	start := time.Now()
	changeOnAWaitForBToRefuse(t, b, cfg, "B refuses logins while the store is silent")
	t.Logf("B failed closed %v after the change", time.Since(start).Round(time.Millisecond))
	b.waitLog("user store", 1)

	hop.thaw()
	waitForBToServeTheNewPassword(t, b)
	// The session alice opened on B with the old password ended with the
	// reload that brought the new one, as on the instance that changed it.
	if _, err := live.Exec(context.Background(), "SELECT 1"); err == nil {
		t.Fatal("alice's session on B, opened with the revoked password, still runs")
	}
}

// The store's network may go silent at any moment, also while an instance
// sets up its LISTEN: B's LISTEN statement waited for an answer with no
// deadline, so B never learnt that it listened to nothing, and went on
// accepting a password changed on A, for as long as TCP keepalive let the
// connection live.
func TestAnInstanceWhoseListenNeverTakesEffectRefusesLogins(t *testing.T) {
	hop := newFreezableHop(t, pg.port)
	hop.freezeOnceAt([]byte("LISTEN "))
	// In plain text, so that the hop sees the LISTEN statement go by.
	b, cfg := instanceBehindHop(t, hop, "sslmode = \"disable\"\n")
	changeOnAWaitForBToRefuse(t, b, cfg, "B refuses logins while its LISTEN goes unanswered")
	b.waitLog("lost the user store's LISTEN connection", 1)
	hop.freezeOnceAt(nil)
	hop.thaw()
	waitForBToServeTheNewPassword(t, b)
}

// instanceBehindHop starts instance A of a fresh store, with alice, and
// instance B, which reaches the store through hop (storeExtra adds lines
// to its [store]); it returns B and the configuration A's CLI changes.
func instanceBehindHop(t *testing.T, hop *freezableHop, storeExtra string) (b *gateway, cfg string) {
	t.Helper()
	freshStore(t)
	rules := "\n[[hba]]\nmethod = \"scram-sha-256\"\n"
	opts := gwOptions{server: "peer_id = 1", backend: `connect_timeout = "2s"`}
	a := newGateway(t, opts, storeSection+rules)
	a.fillStore(t, []testUser{{name: "alice", password: "alice-Pass-1"}})
	a.start()
	opts.server = "peer_id = 2"
	b = startGatewayWith(t, opts, storeSection+fmt.Sprintf("host = \"127.0.0.1\"\nport = %d\n", hop.port)+storeExtra+rules, nil)
	return b, a.configPath()
}

// changeOnAWaitForBToRefuse changes alice's password with A's
// configuration cfg and waits for B to refuse the old one with 57P03.
func changeOnAWaitForBToRefuse(t *testing.T, b *gateway, cfg, what string) {
	t.Helper()
	if _, errOut, code := runCLI(t, "alice-Pass-NEW\n", "user", "passwd", "alice", "--password-stdin", "-c", cfg); code != 0 {
		t.Fatalf("user passwd: %s", errOut)
	}
	noteSecret("alice-Pass-NEW")
	waitFor(t, 15*time.Second, what, func() bool {
		c, err := b.connect("alice", "alice-Pass-1", "postgres")
		if err == nil {
			c.Close(context.Background())
			return false
		}
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "57P03"
	})
}

// waitForBToServeTheNewPassword waits for B to let alice in with the new
// password, and then refuse the old one.
func waitForBToServeTheNewPassword(t *testing.T, b *gateway) {
	t.Helper()
	waitFor(t, 15*time.Second, "B serves the new password once the store answers", func() bool { return b.logsIn("alice", "alice-Pass-NEW") })
	if c, err := b.connect("alice", "alice-Pass-1", "postgres"); err == nil {
		c.Close(context.Background())
		t.Fatal("B still accepts the old password after it reloaded")
	}
}

// freezableHop forwards TCP connections to a local port until frozen; then
// it holds every byte, in both directions, without closing anything, as a
// network that drops packets does, until thawed.
type freezableHop struct {
	port   int
	mu     sync.Mutex
	thawed chan struct{} // nil while forwarding; closed at thaw
	done   chan struct{}
	// freezeAt, when set, freezes the hop as bytes that hold it come by
	// from the client side (before they are forwarded).
	freezeAt []byte
}

func newFreezableHop(t *testing.T, to int) *freezableHop {
	t.Helper()
	h := &freezableHop{done: make(chan struct{})}
	t.Cleanup(func() { close(h.done) })
	h.port = localServer(t, func(c net.Conn) {
		s, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", to))
		if err != nil {
			c.Close()
			return
		}
		h.mu.Lock()
		at := h.freezeAt
		h.mu.Unlock()
		go h.pump(s, c, at) // from the client
		h.pump(c, s, nil)
	})
	return h
}

func (h *freezableHop) pump(dst, src net.Conn, freezeAt []byte) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if freezeAt != nil && bytes.Contains(buf[:n], freezeAt) {
				h.freeze()
			}
			h.mu.Lock()
			wait := h.thawed
			h.mu.Unlock()
			if wait != nil {
				select {
				case <-wait:
				case <-h.done:
					return
				}
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (h *freezableHop) freeze() {
	h.mu.Lock()
	if h.thawed == nil {
		h.thawed = make(chan struct{})
	}
	h.mu.Unlock()
}

// freezeOnceAt makes the connections opened from now on freeze the hop
// when the client sends bytes holding pattern (nil: never).
func (h *freezableHop) freezeOnceAt(pattern []byte) {
	h.mu.Lock()
	h.freezeAt = pattern
	h.mu.Unlock()
}

func (h *freezableHop) thaw() {
	h.mu.Lock()
	close(h.thawed)
	h.thawed = nil
	h.mu.Unlock()
}

// Any role that can connect to the store's database can NOTIFY on its
// channel. A flood of notifications costs each instance at most a few
// reloads a second, not one reload (a read of every user from the store)
// per notification; a real change made during the flood still applies
// within a second.
func TestAFloodOfStoreNotificationsCostsFewReloads(t *testing.T) {
	freshStore(t)
	rules := storeSection + "\n[[hba]]\nmethod = \"scram-sha-256\"\n"
	g := newGateway(t, gwOptions{}, rules)
	cfg := g.configPath()
	g.fillStore(t, []testUser{{name: "alice", password: "alice-Pass-1"}})
	g.start()
	g.mustConnect("alice", "alice-Pass-1", "postgres").Close(context.Background())
	applied := func() int { return strings.Count(g.log.String(), "user store change applied") }
	// Notifications that leave the users as they are reload nothing: each
	// reload read and parsed every user, emptied the credential and token
	// caches and fetched the identity providers' keys again, ten times a
	// second for as long as someone kept sending them.
	before := applied()
	for i := 0; i < 8; i++ {
		if err := pg.ExecIn("pgwarden_store_db", "NOTIFY pgwarden_users, 'nothing changed'"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	g.waitLog("user store notification with the users unchanged", 1)
	time.Sleep(300 * time.Millisecond)
	if n := applied() - before; n != 0 {
		t.Fatalf("8 notifications without a change made %d reloads", n)
	}
	before = applied()
	start := time.Now()
	flood := make(chan error, 1)
	go func() {
		flood <- pg.ExecIn("pgwarden_store_db", "SELECT pg_notify('pgwarden_users', 'flood ' || g) FROM generate_series(1, 50000) g")
	}()
	if _, errOut, code := runCLI(t, "alice-Pass-NEW\n", "user", "passwd", "alice", "--password-stdin", "-c", cfg); code != 0 {
		t.Fatalf("user passwd: %s", errOut)
	}
	noteSecret("alice-Pass-NEW")
	if err := <-flood; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "the new password is in force during the flood", func() bool { return g.logsIn("alice", "alice-Pass-NEW") })
	time.Sleep(2 * time.Second) // what the flood left queued is taken in
	n, took := applied()-before, time.Since(start)
	if max := int(took/(100*time.Millisecond)) + 5; n > max {
		t.Fatalf("50,000 notifications in %v made %d reloads (at most %d expected)", took.Round(time.Millisecond), n, max)
	}
	t.Logf("50,000 notifications in %v made %d reloads", took.Round(time.Millisecond), n)
}

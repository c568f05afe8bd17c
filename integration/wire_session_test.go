package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestCancelReachesTheRightBackend(t *testing.T) {
	g := startGateway(t, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	busy := g.mustConnect("alice", "alice-Pass-1", "postgres")
	bystander := g.mustConnect("alice", "alice-Pass-1", "postgres")

	// The bystander runs a short sleep that must not be canceled.
	var wg sync.WaitGroup
	var bystanderErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, bystanderErr = bystander.Exec(context.Background(), "SELECT pg_sleep(1.5)")
	}()
	// pgx sends a CancelRequest with the BackendKeyData pgwarden gave it
	// when the context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := busy.Exec(ctx, "SELECT pg_sleep(30)")
	if err == nil {
		t.Fatal("pg_sleep(30) was not canceled")
	}
	wg.Wait()
	if bystanderErr != nil {
		t.Fatalf("the other session was hit by the cancel: %v", bystanderErr)
	}
	// The canceled session itself is still usable: pgx closes a connection
	// whose context expired, so check through psql's own cancel instead.
	if !busy.IsClosed() {
		if got := queryOne(t, busy, "SELECT 'still here'"); got != "still here" {
			t.Fatal(got)
		}
	}
}

func TestCancelOfAQueryIsReportedAs57014(t *testing.T) {
	g := startGateway(t, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	c := g.mustConnect("alice", "alice-Pass-1", "postgres")
	// Cancel through the protocol directly, keeping the connection.
	go func() {
		time.Sleep(300 * time.Millisecond)
		c.PgConn().CancelRequest(context.Background())
	}()
	_, err := c.Exec(context.Background(), "SELECT pg_sleep(30)")
	wantPgError(t, err, "57014", "canceling statement due to user request")
	if got := queryOne(t, c, "SELECT 'after cancel'"); got != "after cancel" {
		t.Fatal(got)
	}
}

func TestUnknownCancelKeysAreIgnored(t *testing.T) {
	g := startGateway(t, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	c := g.mustConnect("alice", "alice-Pass-1", "postgres")
	pid := c.PgConn().PID()
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), "SELECT pg_sleep(1)")
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	for _, key := range [][]byte{{1, 2, 3, 4}, {0, 0, 0, 0}} {
		r := dialRaw(t, g.addr())
		msg := []byte{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, byte(pid >> 24), byte(pid >> 16), byte(pid >> 8), byte(pid)}
		r.write(append(msg, key...))
		r.expectClosed()
	}
	if err := <-done; err != nil {
		t.Fatalf("a wrong key canceled the query: %v", err)
	}
}

func TestBackendRestartEndsSessionsAndNewOnesWorkAfter(t *testing.T) {
	own := ownCluster(t)
	g := startGatewayWith(t, gwOptions{backendPort: own.port}, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	c := g.mustConnect("alice", "alice-Pass-1", "postgres")
	queryOne(t, c, "SELECT 'before'")
	if err := own.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(context.Background(), "SELECT 1"); err == nil {
		t.Fatal("a session survived its backend's shutdown")
	}
	_, err := g.connect("alice", "alice-Pass-1", "postgres")
	wantPgError(t, err, "08006", "could not connect to the backend server")
	if err := own.Start(); err != nil {
		t.Fatal(err)
	}
	c2 := g.mustConnect("alice", "alice-Pass-1", "postgres")
	if got := queryOne(t, c2, "SELECT 'after'"); got != "after" {
		t.Fatal(got)
	}
}

func TestReloadAddsAUserWithoutDroppingSessions(t *testing.T) {
	g := startGateway(t, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	live := g.mustConnect("alice", "alice-Pass-1", "postgres")
	_, err := g.connect("carol", "carol-New-7", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "carol"`)

	g.writeUsers([]testUser{{name: "alice", password: "alice-Pass-1"}, {name: "carol", password: "carol-New-7"}})
	g.signal(syscall.SIGHUP)
	g.waitLog(`"msg":"reloaded"`, 1)
	c := g.mustConnect("carol", "carol-New-7", "postgres")
	queryOne(t, c, "SELECT 1")
	if got := queryOne(t, live, "SELECT 'alive'"); got != "alive" {
		t.Fatal(got)
	}
}

func TestBrokenReloadKeepsTheOldConfiguration(t *testing.T) {
	g := startGateway(t, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	live := g.mustConnect("alice", "alice-Pass-1", "postgres")
	writeFile(t, g.configPath(), baseConfig(g.port, g.sockDir, gwOptions{})+"\n[[hba]]\nmethod = \"trust\"\naddress = \"10.0.0.300/8\"\n")
	g.signal(syscall.SIGHUP)
	g.waitLog("reload failed", 1)
	if !strings.Contains(g.log.String(), "10.0.0.300/8") {
		t.Fatalf("the reload error does not say what is wrong:\n%s", g.log.String())
	}
	// Still the old rules: a password is still required.
	_, err := g.connect("alice", "wrong-password", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "alice"`)
	g.mustConnect("alice", "alice-Pass-1", "postgres")
	queryOne(t, live, "SELECT 1")
}

func TestThrottleDelaysRepeatedFailuresButNotOthers(t *testing.T) {
	g := startGatewayWith(t, gwOptions{throttle: `failure_delay = "300ms"` + "\n" + `max_delay = "1200ms"`},
		passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}, {name: "bob", password: "bob-Pass-2"}})
	// The first failure is answered at once; each next attempt of
	// (127.0.0.1, alice) is checked only after 300ms, 600ms, 1200ms,
	// 1200ms: lower bounds only, no upper ones.
	for i, min := range []time.Duration{0, 300, 600, 1200, 1200} {
		start := time.Now()
		_, err := g.connect("alice", "wrong-password", "postgres")
		wantPgError(t, err, "28P01", `password authentication failed for user "alice"`)
		// The backoff runs from the moment the server recorded the last
		// failure, a little before this client saw it: allow for that.
		if took := time.Since(start); took < min*time.Millisecond-50*time.Millisecond {
			t.Fatalf("attempt %d answered after %v, want at least %v", i+1, took, min*time.Millisecond)
		}
	}
	// While alice's next attempt waits, bob logs in: the waiting
	// connection holds no lock that others need.
	failed := make(chan struct{})
	go func() {
		g.connect("alice", "wrong-password", "postgres")
		close(failed)
	}()
	time.Sleep(100 * time.Millisecond)
	c := g.mustConnect("bob", "bob-Pass-2", "postgres")
	queryOne(t, c, "SELECT 1")
	select {
	case <-failed:
		t.Fatal("alice's throttled attempt answered before bob's login finished")
	default:
	}
	<-failed
	// The right password waits too, then a success resets alice's count:
	// the next failure is answered at once and the one after waits 300ms.
	start := time.Now()
	g.mustConnect("alice", "alice-Pass-1", "postgres")
	if took := time.Since(start); took < 1200*time.Millisecond {
		t.Fatalf("the right password was checked after %v, before the backoff passed", took)
	}
	start = time.Now()
	g.connect("alice", "wrong-password", "postgres")
	g.connect("alice", "wrong-password", "postgres")
	if took := time.Since(start); took < 300*time.Millisecond || took >= 1200*time.Millisecond {
		t.Fatalf("after a success the delay should restart at 300ms, took %v", took)
	}
}

func TestSIGTERMDrainsSessionsAndRefusesNewClients(t *testing.T) {
	g := startGateway(t, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	live := g.mustConnect("alice", "alice-Pass-1", "postgres")
	g.signal(syscall.SIGTERM)
	g.waitLog("draining", 1)
	// The listeners close at once, so a balancer's TCP check fails and
	// no new client is taken in: a connect is refused, not answered.
	if c, err := net.DialTimeout("tcp", g.addr(), 2*time.Second); err == nil {
		c.Close()
		t.Fatal("a draining pgwarden still accepts connections")
	}
	if _, err := os.Stat(filepath.Join(g.sockDir, fmt.Sprintf(".s.PGSQL.%d", g.port))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the unix socket still exists while draining: %v", err)
	}
	if got := queryOne(t, live, "SELECT 'draining but alive'"); got != "draining but alive" {
		t.Fatal(got)
	}
	live.Close(context.Background())
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		t.Fatal("pgwarden did not exit once its last session ended")
	}
	if g.exitErr != nil {
		t.Fatalf("exit: %v", g.exitErr)
	}
}

func TestSIGTERMClosesSessionsAfterShutdownTimeout(t *testing.T) {
	g := startGatewayServer(t, "", passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	live := g.mustConnect("alice", "alice-Pass-1", "postgres")
	g.signal(syscall.SIGTERM)
	select {
	case <-g.done: // shutdown_timeout is 5s in tests
	case <-time.After(20 * time.Second):
		t.Fatal("pgwarden did not stop after shutdown_timeout")
	}
	// At shutdown_timeout the session is told why it ends, in
	// PostgreSQL's words, before its socket closes.
	_, err := live.Exec(context.Background(), "SELECT 1")
	wantPgError(t, err, "57P01", "terminating connection due to administrator command")
}

func TestSIGINTClosesEverythingAtOnce(t *testing.T) {
	g := startGateway(t, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	live := g.mustConnect("alice", "alice-Pass-1", "postgres")
	g.signal(syscall.SIGINT)
	select {
	case <-g.done:
	case <-time.After(5 * time.Second):
		t.Fatal("SIGINT did not stop pgwarden promptly")
	}
	_, err := live.Exec(context.Background(), "SELECT 1")
	wantPgError(t, err, "57P01", "terminating connection due to administrator command")
	if _, err := os.Stat(filepath.Join(g.sockDir, fmt.Sprintf(".s.PGSQL.%d", g.port))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unix socket left behind: %v", err)
	}
}

// TestAReloadThatRevokesAUsersLoginEndsTheirSessions: a password changed
// outside this instance (pgwarden user passwd, another instance through
// the store, an edited file) ends the user's wire sessions when the reload
// brings it, as ALTER USER on the admin console does; so does removing the
// user. Other users' sessions, and a user whose entry is unchanged, stay.
func TestAReloadThatRevokesAUsersLoginEndsTheirSessions(t *testing.T) {
	users := []testUser{{name: "alice", password: "alice-Pass-1"}, {name: "bob", password: "bob-Pass-2"}, {name: "carol", password: "carol-Pass-3"}}
	g := startGateway(t, passwordRules, users)
	alice := g.mustConnect("alice", "alice-Pass-1", "postgres")
	bob := g.mustConnect("bob", "bob-Pass-2", "postgres")
	carol := g.mustConnect("carol", "carol-Pass-3", "postgres")

	if _, errOut, code := runCLI(t, "alice-Pass-NEW\n", "user", "passwd", "alice", "--password-stdin", "-c", g.configPath()); code != 0 {
		t.Fatalf("user passwd: %s", errOut)
	}
	noteSecret("alice-Pass-NEW")
	waitFor(t, 5*time.Second, "alice's session ends", func() bool {
		_, err := alice.Exec(context.Background(), "SELECT 1")
		return err != nil
	})
	g.waitLog(`"msg":"a reload revoked the user's login: their wire sessions end","user":"alice"`, 1)
	if _, errOut, code := runCLI(t, "", "user", "del", "bob", "-c", g.configPath()); code != 0 {
		t.Fatalf("user del: %s", errOut)
	}
	waitFor(t, 5*time.Second, "bob's session ends", func() bool {
		_, err := bob.Exec(context.Background(), "SELECT 1")
		return err != nil
	})
	if got := queryOne(t, carol, "SELECT 'alive'"); got != "alive" {
		t.Fatal(got)
	}
	c := g.mustConnect("alice", "alice-Pass-NEW", "postgres")
	queryOne(t, c, "SELECT 1")
}

// TestAChangeMadeElsewhereThatAnAdminsChangeBringsInEndsSessions: the
// admin console (like the web console, CREATE TOKEN and setup) reads the
// users file afresh under its lock for each change, so a change made
// elsewhere that no reload has brought yet (pgwarden user passwd, another
// instance, an edited file) comes into force together with the admin's.
// The reload that follows then finds nothing new, so the sessions that
// change revoked must end when the admin's change brings it in. The test
// keeps the file watch from reloading in between by touching a file in
// the users file's folder faster than the watch's 300 ms of quiet.
func TestAChangeMadeElsewhereThatAnAdminsChangeBringsInEndsSessions(t *testing.T) {
	users := []testUser{{name: "root", password: "root-Admin-1", extra: `roles = ["admin"]` + "\n"},
		{name: "alice", password: "alice-Pass-1"}, {name: "bob", password: "bob-Pass-2"}}
	g := startGateway(t, passwordRules, users)
	alice := g.mustConnect("alice", "alice-Pass-1", "postgres")
	bob := g.mustConnect("bob", "bob-Pass-2", "postgres")

	stopTouching := touchNowAndThen(g.dir)
	defer func() {
		if stopTouching != nil {
			stopTouching()
		}
	}()
	reloads := strings.Count(g.log.String(), `"msg":"reloaded"`)
	noteSecret("alice-Pass-NEW")
	if _, errOut, code := runCLI(t, "alice-Pass-NEW\n", "user", "passwd", "alice", "--password-stdin", "-c", g.configPath()); code != 0 {
		t.Fatalf("user passwd: %s", errOut)
	}
	if out, err := psql(t, g.connString("root", "root-Admin-1", "pgwarden"), "CREATE USER carol PASSWORD 'carol-Pass-3'"); err != nil {
		t.Fatalf("CREATE USER: %v\n%s", err, out)
	}
	noteSecret("carol-Pass-3")
	if n := strings.Count(g.log.String(), `"msg":"reloaded"`); n != reloads {
		t.Fatalf("the file watch reloaded before the admin's change (%d reloads, %d before), so this run proves nothing", n, reloads)
	}
	waitFor(t, 5*time.Second, "alice's session ends", func() bool {
		_, err := alice.Exec(context.Background(), "SELECT 1")
		return err != nil
	})
	g.waitLog(`"msg":"a change found in the users store revoked the user's login: their wire sessions end","user":"alice"`, 1)
	stopTouching()
	stopTouching = nil
	// The watch's own reload, once the folder is quiet, changes nothing
	// more: bob's session stays, and alice's new password works.
	g.waitLog(`"msg":"reloaded"`, reloads+1)
	if got := queryOne(t, bob, "SELECT 'alive'"); got != "alive" {
		t.Fatal(got)
	}
	queryOne(t, g.mustConnect("alice", "alice-Pass-NEW", "postgres"), "SELECT 1")
	queryOne(t, g.mustConnect("carol", "carol-Pass-3", "postgres"), "SELECT 1")
	if g.logsIn("alice", "alice-Pass-1") {
		t.Fatal("alice's old password still works")
	}
}

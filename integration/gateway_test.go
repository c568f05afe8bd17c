package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/authcore"
)

// lockedBuffer is a log sink written by the process and read by tests.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// gateway is one running pgwarden process.
type gateway struct {
	t       *testing.T
	dir     string
	port    int
	sockDir string
	cmd     *exec.Cmd
	log     *lockedBuffer
	done    chan struct{}
	exitErr error

	opts gwOptions
}

// testUser is a users-file entry with its cleartext password.
type testUser struct {
	name, password, algo string
	extra                string // more TOML lines for the [[user]] block
}

// hashes keeps one hash per (algorithm, password): a users file rewritten
// with an unchanged entry keeps its hash, as a real edit does (a new hash
// of the same password revokes the user's sessions at reload).
var hashes sync.Map // [2]string -> string

// usersTOML writes users with hashed passwords.
func usersTOML(t *testing.T, users []testUser) string {
	var b strings.Builder
	for _, u := range users {
		fmt.Fprintf(&b, "[[user]]\nname = %q\n", u.name)
		if u.password != "" {
			noteSecret(u.password)
			key := [2]string{u.algo, u.password}
			h, _ := hashes.Load(key)
			if h == nil {
				fresh, err := authcore.HashPassword(u.algo, u.password)
				if err != nil {
					t.Fatal(err)
				}
				h, _ = hashes.LoadOrStore(key, fresh)
			}
			noteSecret(h.(string)) // stored hashes must not reach the logs either
			fmt.Fprintf(&b, "password = %q\n", h)
		}
		b.WriteString(u.extra)
		b.WriteString("\n")
	}
	return b.String()
}

// gwOptions changes the shared part of a test gateway's configuration.
type gwOptions struct {
	server   string // more [server] lines
	backend  string // more [backend] lines
	throttle string // [throttle] lines replacing the fast default
	// backendPort overrides the shared cluster's port.
	backendPort int
	// noSharedPassword leaves [backend] password unset.
	noSharedPassword bool
	// http serves the HTTP frontend on a free port.
	http bool
	// http section lines ([http]).
	httpSection string
	// env is added to the process environment.
	env []string
	// top holds top-level keys (hba_file), written before any table.
	top string
}

// baseConfig is the [server], [backend], [throttle] and [log] part every
// test shares; the test appends its own rules and sections.
func baseConfig(port int, sockDir string, o gwOptions) string {
	if !strings.Contains(o.server, "auth_timeout") {
		o.server += "\nauth_timeout = \"5s\""
	}
	if o.throttle == "" {
		o.throttle = "failure_delay = \"10ms\"\nmax_delay = \"20ms\""
	}
	if o.backendPort == 0 {
		o.backendPort = pg.port
	}
	httpListen := "[]"
	if o.http {
		httpListen = fmt.Sprintf("[\"127.0.0.1:%d\"]", port+1)
	}
	if !strings.Contains(o.backend, "sslmode") {
		o.backend += "\nsslmode = \"disable\""
	}
	if !o.noSharedPassword {
		o.backend += fmt.Sprintf("\npassword = %q", backendPassword)
	}
	return o.top + fmt.Sprintf(`
[server]
%s
pg_listen = ["127.0.0.1:%d"]
http_listen = %s
unix_socket_dir = %q
shutdown_timeout = "5s"

[backend]
host = "127.0.0.1"
port = %d
%s

[throttle]
%s

[http]
%s

[log]
level = "debug"
`, o.server, port, httpListen, sockDir, o.backendPort, o.backend, o.throttle, o.httpSection)
}

// startGateway writes config.toml (base plus extra) and users.toml and
// runs pgwarden until the test ends.
func startGateway(t *testing.T, extra string, users []testUser) *gateway {
	t.Helper()
	return startGatewayWith(t, gwOptions{}, extra, users)
}

// startGatewayServer is startGateway with more [server] settings.
func startGatewayServer(t *testing.T, serverExtra, extra string, users []testUser) *gateway {
	t.Helper()
	return startGatewayWith(t, gwOptions{server: serverExtra}, extra, users)
}

// startGatewayWith is startGateway with changed shared settings.
func startGatewayWith(t *testing.T, o gwOptions, extra string, users []testUser) *gateway {
	t.Helper()
	port := freePort()
	if o.http {
		port = freePortPair()
	}
	return startGatewayAt(t, port, o, extra, users)
}

// newGateway writes a gateway's configuration (and an empty users file)
// without starting it; start starts it.
func newGateway(t *testing.T, o gwOptions, extra string) *gateway {
	t.Helper()
	port := freePort()
	if o.http {
		port = freePortPair()
	}
	return newGatewayAt(t, port, o, extra)
}

// newGatewayAt is newGateway on a given port.
func newGatewayAt(t *testing.T, port int, o gwOptions, extra string) *gateway {
	t.Helper()
	g := &gateway{t: t, dir: t.TempDir(), port: port, log: &lockedBuffer{}, done: make(chan struct{}), opts: o}
	g.sockDir = g.dir
	g.writeConfig(extra)
	g.writeUsers(nil)
	return g
}

// startGatewayAt is startGatewayWith on a given port.
func startGatewayAt(t *testing.T, port int, o gwOptions, extra string, users []testUser) *gateway {
	t.Helper()
	dir := t.TempDir()
	g := &gateway{t: t, dir: dir, port: port, sockDir: dir, log: &lockedBuffer{}, done: make(chan struct{}), opts: o}
	g.writeConfig(extra)
	g.writeUsers(users)
	g.start()
	return g
}

func (g *gateway) configPath() string { return filepath.Join(g.dir, "config.toml") }

func (g *gateway) writeConfig(extra string) {
	g.t.Helper()
	if err := os.WriteFile(g.configPath(), []byte(baseConfig(g.port, g.sockDir, g.opts)+extra), 0o600); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gateway) writeUsers(users []testUser) {
	g.t.Helper()
	if err := os.WriteFile(filepath.Join(g.dir, "users.toml"), []byte(usersTOML(g.t, users)), 0o600); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gateway) start() {
	g.t.Helper()
	logsMu.Lock()
	allLogs = append(allLogs, g.log)
	logsMu.Unlock()
	g.cmd = exec.Command(pgwardenBin, "serve", "-c", g.configPath())
	if len(g.opts.env) > 0 {
		g.cmd.Env = append(os.Environ(), g.opts.env...)
	}
	g.cmd.Stdout = g.log
	g.cmd.Stderr = g.log
	if err := startTiedToTests(g.cmd); err != nil {
		g.t.Fatal(err)
	}
	go func() {
		g.exitErr = g.cmd.Wait()
		close(g.done)
	}()
	g.t.Cleanup(g.kill)
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Ready when the last listener opened (HTTP, when on) accepts.
		addr := g.addr()
		if g.opts.http {
			addr = fmt.Sprintf("127.0.0.1:%d", g.port+1)
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			// The unix socket opens after the TCP listeners: a test that
			// dialed it at once could find it bound but not yet
			// listening (connection refused, seen once in CI). Its
			// "listening" line comes once it listens.
			if g.opts.http || g.sockDir == "" || strings.Contains(g.log.String(), fmt.Sprintf(`.s.PGSQL.%d"`, g.port)) {
				return
			}
		}
		select {
		case <-g.done:
			g.t.Fatalf("pgwarden exited: %v\n%s", g.exitErr, g.log.String())
		default:
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("pgwarden did not start listening:\n%s", g.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops the process we started, by its PID, and waits for it.
func (g *gateway) kill() {
	select {
	case <-g.done:
		return
	default:
	}
	g.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		g.cmd.Process.Kill()
		<-g.done
	}
	if g.t.Failed() {
		g.t.Logf("pgwarden log:\n%s", g.log.String())
	}
}

// reloadAfter makes change (writes to the files pgwarden reads), sends
// SIGHUP and waits for a reload that saw it. pgwarden also watches its
// files, so one change may be reloaded twice (the watcher's, then the
// SIGHUP's) and an earlier change's second reload may still be on its way:
// counting reloads is only safe once they have settled (no new one for
// longer than the watcher's 300 ms debounce).
func (g *gateway) reloadAfter(change func()) {
	g.t.Helper()
	count := func() int { return strings.Count(g.log.String(), `"msg":"reloaded"`) }
	last, quietSince := count(), time.Now()
	for deadline := time.Now().Add(10 * time.Second); time.Since(quietSince) < 600*time.Millisecond && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		if n := count(); n != last {
			last, quietSince = n, time.Now()
		}
	}
	change()
	g.signal(syscall.SIGHUP)
	g.waitLog(`"msg":"reloaded"`, last+1)
}

func (g *gateway) signal(s os.Signal) {
	g.t.Helper()
	if err := g.cmd.Process.Signal(s); err != nil {
		g.t.Fatal(err)
	}
}

// waitLog waits until the log contains s.
func (g *gateway) waitLog(s string, count int) {
	g.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(g.log.String(), s) < count {
		if time.Now().After(deadline) {
			g.t.Fatalf("log never showed %q %d times:\n%s", s, count, g.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *gateway) addr() string { return fmt.Sprintf("127.0.0.1:%d", g.port) }

// connString builds a libpq-style connection string to the gateway over TCP.
func (g *gateway) connString(user, password, db string) string {
	s := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable connect_timeout=20", g.port, user, db)
	if password != "" {
		s += fmt.Sprintf(" password='%s'", password)
	}
	return s
}

// connect logs in through the gateway with pgx.
func (g *gateway) connect(user, password, db string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return pgx.Connect(ctx, g.connString(user, password, db))
}

// mustConnect is connect that fails the test on error.
// logsIn reports whether user logs in with password (the session is
// closed at once).
func (g *gateway) logsIn(user, password string) bool {
	c, err := g.connect(user, password, "postgres")
	if err == nil {
		c.Close(context.Background())
	}
	return err == nil
}

// replaceUsersFile writes users as configuration management does: a new
// file renamed over the old one.
func (g *gateway) replaceUsersFile(users []testUser) {
	g.t.Helper()
	tmp := filepath.Join(g.dir, "users.toml.new")
	if err := os.WriteFile(tmp, []byte(usersTOML(g.t, users)), 0o600); err != nil {
		g.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(g.dir, "users.toml")); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gateway) mustConnect(user, password, db string) *pgx.Conn {
	g.t.Helper()
	c, err := g.connect(user, password, db)
	if err != nil {
		g.t.Fatalf("connect as %s to %s: %v", user, db, err)
	}
	g.t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// pgError extracts the server error a client saw.
func pgError(t *testing.T, err error) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("want a server error, got %v", err)
	}
	return pe
}

// wantPgError asserts the SQLSTATE and message a client saw.
func wantPgError(t *testing.T, err error, code, message string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want error %s %q, got success", code, message)
	}
	pe := pgError(t, err)
	if pe.Code != code || pe.Message != message {
		t.Fatalf("want %s %q, got %s %q", code, message, pe.Code, pe.Message)
	}
}

// queryOne runs a query that returns one text value.
func queryOne(t *testing.T, c *pgx.Conn, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var s string
	if err := c.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// psql runs the psql client with a connection string and returns its output.
func psql(t *testing.T, conn string, sql string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conn, "-c", sql)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=20")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (g *gateway) connectString(s string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return pgx.Connect(ctx, s)
}

func (g *gateway) mustConnectString(s string) *pgx.Conn {
	g.t.Helper()
	c, err := g.connectString(s)
	if err != nil {
		g.t.Fatalf("connect %s: %v", s, err)
	}
	g.t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// httpURL is the HTTP frontend's base URL (its port is the pg port + 1).
func (g *gateway) httpURL() string { return fmt.Sprintf("http://127.0.0.1:%d", g.port+1) }

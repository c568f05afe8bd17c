package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestAChangedUsersFileIsInForceWithoutASignal changes the users file the
// way configuration management does (a new file renamed over the old one)
// and expects the new password to work and the old one to fail, with no
// SIGHUP; a broken file keeps the old state.
func TestAChangedUsersFileIsInForceWithoutASignal(t *testing.T) {
	g := startGatewayWith(t, gwOptions{}, "[[hba]]\nmethod = \"scram-sha-256\"\n", []testUser{{name: "alice", password: "alice-Pass-1"}})
	c := g.mustConnect("alice", "alice-Pass-1", "postgres")
	c.Close(context.Background())

	g.replaceUsersFile([]testUser{{name: "alice", password: "alice-Pass-2"}})
	waitFor(t, 5*time.Second, "the new password works", func() bool { return g.logsIn("alice", "alice-Pass-2") })
	if _, err := g.connect("alice", "alice-Pass-1", "postgres"); err == nil {
		t.Fatal("the old password still works after the users file changed")
	}
	// A users file that does not load: the old state stays, and says why.
	writeFile(t, filepath.Join(g.dir, "users.toml.new"), "[[user]]\nname = \n")
	if err := os.Rename(filepath.Join(g.dir, "users.toml.new"), filepath.Join(g.dir, "users.toml")); err != nil {
		t.Fatal(err)
	}
	g.waitLog("reload failed; the previous configuration stays in force", 1)
	c, err := g.connect("alice", "alice-Pass-2", "postgres")
	if err != nil {
		t.Fatalf("a broken users file changed the state in force: %v", err)
	}
	c.Close(context.Background())
}

// TestAUsersFileLinkedFromElsewhereIsWatchedWhereItLives: the users file
// is a symlink into a secrets folder, where a deployment replaces it. The
// watcher watched only the link's folder, which sees no event then, so the
// old password kept working until a SIGHUP.
func TestAUsersFileLinkedFromElsewhereIsWatchedWhereItLives(t *testing.T) {
	g := newGateway(t, gwOptions{}, "[[hba]]\nmethod = \"scram-sha-256\"\n")
	secrets := filepath.Join(t.TempDir(), "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(secrets, "users.toml")
	writeFile(t, real, usersTOML(t, []testUser{{name: "alice", password: "alice-Pass-1"}}))
	link := filepath.Join(g.dir, "users.toml")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	g.start()
	c := g.mustConnect("alice", "alice-Pass-1", "postgres")
	c.Close(context.Background())

	writeFile(t, real+".new", usersTOML(t, []testUser{{name: "alice", password: "alice-Pass-2"}}))
	if err := os.Rename(real+".new", real); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the new password works", func() bool { return g.logsIn("alice", "alice-Pass-2") })
	if _, err := g.connect("alice", "alice-Pass-1", "postgres"); err == nil {
		t.Fatal("the old password still works after the linked users file changed")
	}
	// pgwarden's own writes go where the link leads, and the link stays
	// (they replaced the link with a file of its own).
	if _, e, c := runCLI(t, "alice-Pass-3\n", "user", "passwd", "-c", g.configPath(), "alice", "--password-stdin"); c != 0 {
		t.Fatal(e)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("user passwd replaced the link: %v %v", fi, err)
	}
	waitFor(t, 5*time.Second, "the password set through the link works", func() bool { return g.logsIn("alice", "alice-Pass-3") })
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestACancelSentToAnotherPeerCancels runs two instances that know each
// other; a query on A is canceled by a CancelRequest sent to B, as a load
// balancer would send it. Keys of unknown peers are ignored.
func TestACancelSentToAnotherPeerCancels(t *testing.T) {
	t.Run("plain", func(t *testing.T) { cancelThroughPeer(t, false) })
	// Peers that require PROXY headers (behind HAProxy): the client's
	// connection and its cancel come with one, and so does the forward.
	t.Run("proxy_protocol required", func(t *testing.T) { cancelThroughPeer(t, true) })
}

const proxyV1 = "PROXY TCP4 10.9.8.7 127.0.0.1 40000 6432\r\n"

func cancelThroughPeer(t *testing.T, withProxy bool) {
	portA, portB := freePort(), freePort()
	rules := "[[hba]]\nmethod = \"scram-sha-256\"\n"
	users := []testUser{{name: "alice", password: "alice-Pass-1"}}
	peerOf := func(other, otherPort int) string {
		return fmt.Sprintf("\n[[peers]]\nid = %d\naddress = \"127.0.0.1:%d\"\n", other, otherPort)
	}
	server := ""
	if withProxy {
		server = "\nproxy_protocol = \"required\"\ntrusted_proxies = [\"127.0.0.1/32\"]"
	}
	a := startGatewayAt(t, portA, gwOptions{server: "peer_id = 1" + server}, rules+peerOf(2, portB), users)
	b := startGatewayAt(t, portB, gwOptions{server: "peer_id = 2" + server}, rules+peerOf(1, portA), users)

	cfg, err := pgx.ParseConfig(a.connString("alice", "alice-Pass-1", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if withProxy {
		cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				_, err = c.Write([]byte(proxyV1))
			}
			return c, err
		}
	}
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if withProxy {
		// HBA and the audit see the address the PROXY header gave.
		a.waitLog(`"address":"10.9.8.7"`, 1)
	}
	prefix := ""
	if withProxy {
		prefix = proxyV1
	}
	pid, key := conn.PgConn().PID(), conn.PgConn().SecretKey()
	if got := int(key[0])<<2 | int(key[1]>>6); got != 1 {
		t.Fatalf("A's cancel key carries peer id %d, want 1", got)
	}
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), "SELECT pg_sleep(30)")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	// A key of a peer nobody lists is ignored: the query goes on.
	bogus := append([]byte(nil), key...)
	bogus[0] = 0xFF
	sendCancel(t, b.addr(), prefix, pid, bogus)
	select {
	case err := <-done:
		t.Fatalf("a cancel with an unknown peer's key ended the query: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	// The right key, sent to B, reaches A's backend.
	sendCancel(t, b.addr(), prefix, pid, key)
	expectCanceled(t, done, "a cancel sent to the other peer")
}

// TestWrongKeysSentThroughAPeerAreChargedToTheirSender: wrong cancel keys
// are charged to the source that sent them (see The Postgres wire,
// Cancel), also when they carry another peer's id and are forwarded. Until
// December 2026 the owner charged them to the forwarding instance, the
// only address it saw without PROXY headers: a client that sent a few
// hundred wrong keys of B to A had B ignore every cancel A forwarded, its
// genuine clients' too. Now B tells A whether each key was right, and A
// charges the sender; B answers that verdict only to its peers' forwards,
// never to a client.
func TestWrongKeysSentThroughAPeerAreChargedToTheirSender(t *testing.T) {
	portA, portB := freePort(), freePort()
	rules := "[[hba]]\nmethod = \"scram-sha-256\"\n"
	users := []testUser{{name: "alice", password: "alice-Pass-1"}}
	peerOf := func(other, otherPort int) string {
		return fmt.Sprintf("\n[[peers]]\nid = %d\naddress = \"127.0.0.1:%d\"\n", other, otherPort)
	}
	a := startGatewayAt(t, portA, gwOptions{server: "peer_id = 1"}, rules+peerOf(2, portB), users)
	b := startGatewayAt(t, portB, gwOptions{server: "peer_id = 2"}, rules+peerOf(1, portA), users)
	conn := b.mustConnect("alice", "alice-Pass-1", "postgres")
	defer conn.Close(context.Background())
	pid, key := conn.PgConn().PID(), conn.PgConn().SecretKey()
	sleeping := func() <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := conn.Exec(context.Background(), "SELECT pg_sleep(30)")
			done <- err
		}()
		time.Sleep(300 * time.Millisecond)
		return done
	}

	// The guesser is another loopback address than the genuine client's
	// (127.0.0.1), which is also the peers' own.
	const guesser = "127.0.0.3"
	for i := 0; i < 300; i++ {
		wrong := []byte{key[0], key[1]&0xC0 | byte(i>>8)&0x3F, byte(i), key[3] ^ 0xFF}
		sendCancelFrom(t, guesser, a.addr(), pid, wrong, nil)
	}

	// A genuine client's cancel, sent to A, still reaches B's session.
	done := sleeping()
	sendCancelFrom(t, "127.0.0.1", a.addr(), pid, key, nil)
	expectCanceled(t, done, "a cancel forwarded after another source's wrong keys")
	if strings.Contains(b.log.String(), "cancel requests with wrong keys") {
		t.Fatalf("B charged wrong keys to the instance that forwarded them:\n%s", b.log.String())
	}
	a.waitLog(`"msg":"cancel requests with wrong keys: this source's cancel requests are ignored while it keeps sending them","peer_id":1,"address":"`+guesser+`"`, 1)

	// The guesser itself is not listened to, whichever peer its keys name.
	done = sleeping()
	sendCancelFrom(t, guesser, a.addr(), pid, key, nil)
	select {
	case err := <-done:
		t.Fatalf("a source past its budget of wrong keys had its cancel forwarded: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	sendCancelFrom(t, "127.0.0.1", a.addr(), pid, key, nil)
	expectCanceled(t, done, "the genuine client's second cancel")

	// A client answers nothing after its CancelRequest, even from a peer's
	// address; the verdict is only for a forward's mark from a peer's
	// address, so the mark sent from elsewhere gets none either.
	wrong := []byte{key[0], key[1], key[2], key[3] ^ 0x55}
	if got := sendCancelFrom(t, "127.0.0.1", b.addr(), pid, wrong, nil); len(got) != 0 {
		t.Fatalf("a client's CancelRequest was answered %q", got)
	}
	mark := []byte("PGWF")
	if got := sendCancelFrom(t, guesser, b.addr(), pid, wrong, mark); len(got) != 0 {
		t.Fatalf("a forward's mark from an address that is no peer's was answered %q", got)
	}
	if got := sendCancelFrom(t, "127.0.0.1", b.addr(), pid, wrong, mark); string(got) != "N" {
		t.Fatalf("a peer's forward of a wrong key was answered %q, want N", got)
	}
}

// sendCancelFrom sends a CancelRequest, then trailer, from the loopback
// address src, and returns what came back before the close.
func sendCancelFrom(t *testing.T, src, addr string, pid uint32, key, trailer []byte) []byte {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(append(cancelBytes(pid, key), trailer...))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(c)
	return got
}

// expectCanceled waits for the query whose outcome done brings to end with
// 57014, as the cancel request called what should have made it.
func expectCanceled(t *testing.T, done <-chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" {
			t.Fatalf("canceled query: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not cancel the query", what)
	}
}

// sendCancel sends a CancelRequest as libpq does and waits for the close.
// TestACancelForwardingLoopIsCut gives an instance a peer whose address
// leads back to the instance itself, as a load balancer's or a service's
// address does. A cancel request for that peer came back, was forwarded
// again, and so on: one 16-byte packet made hundreds of connections, until
// max_connections stopped the chain and held every slot. A request that
// comes back while its own forward is in flight is dropped.
func TestACancelForwardingLoopIsCut(t *testing.T) {
	port := freePort()
	balancer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer balancer.Close()
	var through atomic.Int64
	go func() {
		for {
			c, err := balancer.Accept()
			if err != nil {
				return
			}
			through.Add(1)
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err != nil {
					return
				}
				defer up.Close()
				go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, up)
			}()
		}
	}()
	g := startGatewayAt(t, port, gwOptions{server: "peer_id = 1\nmax_connections = 100"},
		fmt.Sprintf("[[peers]]\nid = 2\naddress = %q\n[[hba]]\nmethod = \"scram-sha-256\"\n", balancer.Addr().String()),
		[]testUser{{name: "alice", password: "alice-Pass-1"}})
	key := []byte{0, 2 << 6, 0x12, 0x34} // peer id 2 in the top 10 bits
	done := make(chan struct{})
	go func() { sendCancel(t, g.addr(), "", 4242, key); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the cancel request's connection was never closed")
	}
	if n := through.Load(); n != 1 {
		t.Fatalf("one cancel request went through the balancer %d times, want once", n)
	}
	g.waitLog("a cancel request came back while this instance was forwarding it to its peer", 1)
	c := g.mustConnect("alice", "alice-Pass-1", "postgres")
	c.Close(context.Background())
}

func sendCancel(t *testing.T, addr, prefix string, pid uint32, key []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if prefix != "" {
		c.Write([]byte(prefix))
	}
	c.Write(cancelBytes(pid, key))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, c)
}

// SHOW PEERS lists this instance and each peer with whether it answers;
// metrics carry the instance's id, and pgwarden_build_info says the build.
func TestPeersAreVisibleInTheAdminConsoleAndMetrics(t *testing.T) {
	live := startGatewayWith(t, gwOptions{}, "[[hba]]\nmethod = \"trust\"\n", nil)
	dead := freePort()
	g := startGatewayWith(t, gwOptions{http: true, server: "peer_id = 7"}, fmt.Sprintf(`
[[peers]]
id = 8
address = "%s"

[[peers]]
id = 9
address = "127.0.0.1:%d"

[[hba]]
method = "password"
`, live.addr(), dead), []testUser{{name: "root", password: "root-Admin-1", extra: `roles = ["admin"]` + "\n"}})
	out, err := psql(t, g.connString("root", "root-Admin-1", "pgwarden"), "SHOW PEERS")
	if err != nil {
		t.Fatalf("SHOW PEERS: %v\n%s", err, out)
	}
	for _, want := range []string{"7|(this instance)|yes", "8|" + live.addr() + "|yes", fmt.Sprintf("9|127.0.0.1:%d|no", dead)} {
		if !strings.Contains(out, want) {
			t.Fatalf("SHOW PEERS lacks %q:\n%s", want, out)
		}
	}
	text := scrapeMetrics(t, g.httpURL())
	if !regexp.MustCompile(`pgwarden_build_info\{goversion="go[^"]+",peer_id="7",version="[^"]+"\} 1`).MatchString(text) {
		t.Fatalf("no pgwarden_build_info with peer_id 7:\n%s", text)
	}
	if !strings.Contains(text, `pgwarden_reloads_total{peer_id="7",result="ok"}`) {
		t.Fatal("metrics do not carry the peer id")
	}
	g.waitLog(`"peer_id":7`, 1)
}

// With reuse_port, a second instance listens on the same address as the
// first (an upgrade without a refused connection); without it, it cannot.
func TestReusePortLetsANewProcessListenBesideTheOld(t *testing.T) {
	port := freePort()
	rules := "[[hba]]\nmethod = \"trust\"\n"
	startGatewayAt(t, port, gwOptions{server: "reuse_port = true"}, rules, nil)
	second := startGatewayAt(t, port, gwOptions{server: "reuse_port = true"}, rules, nil)
	second.kill()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users.toml"), "")
	cfg := filepath.Join(dir, "config.toml")
	writeFile(t, cfg, fmt.Sprintf("[server]\npg_listen = [\"127.0.0.1:%d\"]\nhttp_listen = []\nunix_socket_dir = \"\"\n%s", port, rules))
	cmd := exec.Command(cliBin, "serve", "-c", cfg)
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "address already in use") {
		t.Fatalf("without reuse_port a second listener on the port: %s", out)
	}
}

// The upgrade reuse_port is for, with the unix socket on (its folder
// defaults to /tmp): the new process refused to start ("another server is
// using this socket"), and the old one, draining, would have removed the
// new one's socket file. Now the new process takes the name over and the
// old one leaves it alone.
func TestReusePortHandsTheUnixSocketToTheNewProcess(t *testing.T) {
	port := freePort()
	shared := t.TempDir()
	rules := "[[hba]]\nmethod = \"trust\"\n"
	start := func() *gateway {
		dir := t.TempDir()
		g := &gateway{t: t, dir: dir, port: port, sockDir: shared, log: &lockedBuffer{}, done: make(chan struct{}), opts: gwOptions{server: "reuse_port = true"}}
		g.writeConfig(rules)
		g.writeUsers(nil)
		g.start()
		return g
	}
	viaSocket := func() (*pgx.Conn, error) {
		return pgx.Connect(context.Background(), fmt.Sprintf("host=%s port=%d user=alice dbname=postgres", shared, port))
	}
	old := start()
	live, err := viaSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close(context.Background())
	start()
	old.signal(syscall.SIGTERM)
	old.waitLog("draining", 1)
	if got := queryOne(t, live, "SELECT 'draining through the old socket'"); got != "draining through the old socket" {
		t.Fatal(got)
	}
	c, err := viaSocket()
	if err != nil {
		t.Fatalf("during the drain the socket does not lead to the new process: %v", err)
	}
	c.Close(context.Background())
	live.Close(context.Background())
	select {
	case <-old.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the old process did not exit once its session ended")
	}
	c, err = viaSocket()
	if err != nil {
		t.Fatalf("after the old process left, the socket is gone: %v", err)
	}
	c.Close(context.Background())
}

// During an upgrade the new process takes every new connection, the
// cancel requests for the old process's draining sessions among them. It
// knew none of their keys, so no draining query could be canceled until
// shutdown_timeout; it now hands them to the draining process.
func TestAQueryOfADrainingProcessCanBeCanceledThroughItsSuccessor(t *testing.T) {
	port := freePort()
	rules := "[[hba]]\nmethod = \"scram-sha-256\"\n"
	users := []testUser{{name: "alice", password: "alice-Pass-1"}}
	old := startGatewayAt(t, port, gwOptions{server: "reuse_port = true"}, rules, users)
	conn := old.mustConnect("alice", "alice-Pass-1", "postgres")
	defer conn.Close(context.Background())
	startGatewayAt(t, port, gwOptions{server: "reuse_port = true"}, rules, users)
	old.signal(syscall.SIGTERM)
	old.waitLog("draining", 1)
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), "SELECT pg_sleep(30)")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	// The old process listens no more: this reaches the new one.
	sendCancel(t, old.addr(), "", conn.PgConn().PID(), conn.PgConn().SecretKey())
	expectCanceled(t, done, "a cancel request sent while its session drained")
	if got := queryOne(t, conn, "SELECT 'still draining'"); got != "still draining" {
		t.Fatal(got)
	}
}

// An upgrade during an upgrade: a process that begins to drain while an
// older one still drains takes its own cancel requests too. The name it
// would listen on was the older one's, so until December 2026 its
// sessions' queries could not be canceled.
func TestQueriesOfTwoDrainingProcessesCanBeCanceled(t *testing.T) {
	port := freePort()
	rules := "[[hba]]\nmethod = \"scram-sha-256\"\n"
	users := []testUser{{name: "alice", password: "alice-Pass-1"}}
	opts := gwOptions{server: "reuse_port = true"}
	first := startGatewayAt(t, port, opts, rules, users)
	c1 := first.mustConnect("alice", "alice-Pass-1", "postgres")
	defer c1.Close(context.Background())
	second := startGatewayAt(t, port, opts, rules, users)
	first.signal(syscall.SIGTERM)
	first.waitLog("draining", 1)
	c2 := second.mustConnect("alice", "alice-Pass-1", "postgres")
	defer c2.Close(context.Background())
	startGatewayAt(t, port, opts, rules, users)
	second.signal(syscall.SIGTERM)
	second.waitLog("draining", 1)
	for i, conn := range []*pgx.Conn{c1, c2} {
		done := make(chan error, 1)
		go func() {
			_, err := conn.Exec(context.Background(), "SELECT pg_sleep(30)")
			done <- err
		}()
		time.Sleep(300 * time.Millisecond)
		sendCancel(t, first.addr(), "", conn.PgConn().PID(), conn.PgConn().SecretKey())
		expectCanceled(t, done, fmt.Sprintf("a cancel request for a session of draining process %d", i+1))
	}
}

// A change that lands while a reload runs is loaded too. The watcher took
// the files' fingerprint after each reload, so a users file rewritten
// during a reload (one fetching a newly named identity provider's keys
// takes as long as the provider answers) counted as seen though the reload
// had read the version before: the password that change revoked kept
// working until the next change or SIGHUP. (A reload waits only for key
// sets no load named before, so the slow reload here is the one that adds
// the issuer.)
func TestAUsersFileChangedDuringAReloadIsInForce(t *testing.T) {
	arrived := make(chan struct{}, 16)
	var slow atomic.Bool
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			arrived <- struct{}{}
			time.Sleep(2 * time.Second)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"keys":[]}`))
	}))
	t.Cleanup(idp.Close)
	rules := `
[[hba]]
method = "scram-sha-256"
`
	g := startGatewayWith(t, gwOptions{}, rules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	replace := func(password string) { g.replaceUsersFile([]testUser{{name: "alice", password: password}}) }
	slow.Store(true)
	g.writeConfig(fmt.Sprintf(`
[[jwt_issuers]]
issuer = "https://idp.test/"
jwks_url = %q
audience = "pgwarden"
algorithms = ["RS256"]
`, idp.URL) + rules)
	replace("alice-Pass-2")
	select {
	case <-arrived: // the reload is under way, waiting for the keys
	case <-time.After(10 * time.Second):
		t.Fatal("no reload fetched the identity provider's keys")
	}
	replace("alice-Pass-3")
	waitFor(t, 10*time.Second, "the password of the change made during the reload works", func() bool { return g.logsIn("alice", "alice-Pass-3") })
	if _, err := g.connect("alice", "alice-Pass-2", "postgres"); err == nil {
		t.Fatal("the password the later change revoked still works")
	}
}

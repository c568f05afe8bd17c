package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestTwoInstancesBehindHAProxy runs two pgwarden instances behind
// HAProxy (Debian's package): TCP mode with PROXY v2 for the wire, HTTP
// mode with X-Forwarded-For, round robin. Clients come from 127.0.0.2 so
// that the address HBA sees can only be theirs if the PROXY header and
// X-Forwarded-For were read (HAProxy itself connects from 127.0.0.1).
func TestTwoInstancesBehindHAProxy(t *testing.T) {
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/haproxy"); err2 == nil {
			haproxy = "/usr/sbin/haproxy"
		} else {
			missingTool(t, "haproxy (Debian: apt-get install haproxy)")
		}
	}
	// alice may log in only from 127.0.0.2; bob and carol from anywhere.
	// The users live in the PostgreSQL store both instances share.
	freshStore(t)
	rules := storeSection + `
[tokens]

[[hba]]
user = "alice"
address = "127.0.0.2/32"
method = "scram-sha-256"

[[hba]]
user = ["bob", "carol"]
method = "scram-sha-256"
`
	users := []testUser{{name: "alice", password: "alice-Pass-1"}, {name: "bob", password: "bob-Pass-2"}, {name: "carol", password: "carol-Pass-3"}}
	portA, portB := freePortPair(), freePortPair()
	server := "proxy_protocol = \"required\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n"
	peer := func(id, port int) string {
		return fmt.Sprintf("\n[[peers]]\nid = %d\naddress = \"127.0.0.1:%d\"\n", id, port)
	}
	httpSection := "default_database = \"postgres\"\nallowed_hosts = [\"127.0.0.1\"]"
	throttle := "failure_delay = \"1s\"\nmax_delay = \"2s\""
	cfgA := newGatewayAt(t, portA, gwOptions{http: true, httpSection: httpSection, throttle: throttle, server: server + "peer_id = 1"}, rules+peer(2, portB))
	cfgA.fillStore(t, users)
	cfgA.start()
	a := cfgA
	b := startGatewayAt(t, portB, gwOptions{http: true, httpSection: httpSection, throttle: throttle, server: server + "peer_id = 2"}, rules+peer(1, portA), nil)

	pgPort, webPort := freePort(), freePort()
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	writeFile(t, cfg, fmt.Sprintf(`global
    maxconn 2000
defaults
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch
frontend pg
    mode tcp
    bind 127.0.0.1:%d
    default_backend pgwarden_pg
backend pgwarden_pg
    mode tcp
    balance roundrobin
    server a 127.0.0.1:%d send-proxy-v2 check inter 200ms fall 1 rise 1
    server b 127.0.0.1:%d send-proxy-v2 check inter 200ms fall 1 rise 1
frontend web
    mode http
    bind 127.0.0.1:%d
    default_backend pgwarden_http
backend pgwarden_http
    mode http
    balance roundrobin
    option forwardfor
    server a 127.0.0.1:%d check inter 200ms
    server b 127.0.0.1:%d check inter 200ms
`, pgPort, portA, portB, webPort, portA+1, portB+1))
	hp := exec.Command(haproxy, "-f", cfg, "-db")
	var hpLog lockedBuffer
	hp.Stdout, hp.Stderr = &hpLog, &hpLog
	if err := startTiedToTests(hp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hp.Process.Signal(syscall.SIGTERM)
		hp.Wait()
		if t.Failed() {
			t.Logf("haproxy log:\n%s", hpLog.String())
		}
	})
	waitFor(t, 10*time.Second, "haproxy listens", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", pgPort))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	time.Sleep(500 * time.Millisecond) // both servers up in HAProxy's checks

	from := func(src string) func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		return d.DialContext
	}
	connect := func(user, pw, src string) (*pgx.Conn, error) {
		c, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=postgres sslmode=disable connect_timeout=10", pgPort, user, pw))
		if err != nil {
			return nil, err
		}
		c.DialFunc = from(src)
		return pgx.ConnectConfig(context.Background(), c)
	}

	t.Run("logins reach both instances and HBA sees the client's address", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			c, err := connect("alice", "alice-Pass-1", "127.0.0.2")
			if err != nil {
				t.Fatalf("alice from 127.0.0.2, login %d: %v", i, err)
			}
			c.Close(context.Background())
		}
		a.waitLog(`"address":"127.0.0.2"`, 1)
		b.waitLog(`"address":"127.0.0.2"`, 1)
		_, err := connect("alice", "alice-Pass-1", "127.0.0.1")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "28000" || !strings.Contains(pe.Message, `host "127.0.0.1"`) {
			t.Fatalf("alice from 127.0.0.1 through HAProxy: %v", err)
		}
		for i := 0; i < 2; i++ {
			if out, err := psql(t, fmt.Sprintf("host=127.0.0.1 port=%d user=bob password=bob-Pass-2 dbname=postgres sslmode=disable", pgPort), "SELECT 1"); err != nil || out != "1" {
				t.Fatalf("psql through HAProxy: %v %s", err, out)
			}
		}
	})

	t.Run("a cancel that HAProxy sends to the other instance cancels", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			c, err := connect("bob", "bob-Pass-2", "127.0.0.2")
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := c.Exec(context.Background(), "SELECT pg_sleep(30)")
				done <- err
			}()
			time.Sleep(300 * time.Millisecond)
			// pgconn sends the CancelRequest to the address it connected
			// to: HAProxy, whose round robin picks the next instance.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := c.PgConn().CancelRequest(ctx); err != nil {
				t.Fatal(err)
			}
			cancel()
			select {
			case err := <-done:
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "57014" {
					t.Fatalf("cancel %d: %v", i, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("cancel %d through HAProxy did not reach the query", i)
			}
			c.Close(context.Background())
		}
	})

	t.Run("psql's Ctrl-C through HAProxy cancels", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			cmd := exec.Command("psql", "-X", "-d", fmt.Sprintf("host=127.0.0.1 port=%d user=bob password=bob-Pass-2 dbname=postgres sslmode=disable", pgPort),
				"-c", "SELECT pg_sleep(30)")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(700 * time.Millisecond)
			cmd.Process.Signal(syscall.SIGINT) // what Ctrl-C sends: psql sends a CancelRequest
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("psql's cancel %d through HAProxy did not end the query", i)
			}
			if !strings.Contains(out.String(), "canceling statement due to user request") {
				t.Fatalf("psql after Ctrl-C (%d): %s", i, out.String())
			}
		}
	})

	t.Run("psycopg2's cancel through HAProxy cancels", func(t *testing.T) {
		py := pythonWithPsycopg2(t)
		script := fmt.Sprintf(`
import threading, time, psycopg2, psycopg2.errors
for i in range(2):
    conn = psycopg2.connect(host="127.0.0.1", port=%d, user="bob", password="bob-Pass-2", dbname="postgres", sslmode="disable")
    threading.Timer(0.4, conn.cancel).start()
    try:
        conn.cursor().execute("SELECT pg_sleep(30)")
        print("not canceled")
    except psycopg2.errors.QueryCanceled:
        print("canceled")
    conn.close()
`, pgPort)
		out, err := exec.Command(py, "-c", script).CombinedOutput()
		if err != nil || strings.Count(string(out), "canceled") != 2 || strings.Contains(string(out), "not canceled") {
			t.Fatalf("psycopg2 cancel through HAProxy: %v\n%s", err, out)
		}
	})

	t.Run("HTTP through HAProxy sees X-Forwarded-For", func(t *testing.T) {
		// alice is allowed only from 127.0.0.2, which HAProxy tells in
		// X-Forwarded-For (it connects from 127.0.0.1 itself).
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: from("127.0.0.2"), DisableKeepAlives: true}}
		for i := 0; i < 4; i++ {
			req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/_sql", webPort), bytes.NewReader([]byte(`{"stmt": "SELECT 1"}`)))
			req.Header.Set("Content-Type", "application/json")
			req.SetBasicAuth("alice", "alice-Pass-1")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("request %d: %d", i, resp.StatusCode)
			}
		}
	})

	web := fmt.Sprintf("http://127.0.0.1:%d", webPort)
	webClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: from("127.0.0.2"), DisableKeepAlives: true}}
	sqlAs := func(auth string) int {
		req, _ := http.NewRequest("POST", web+"/_sql", bytes.NewReader([]byte(`{"stmt": "SELECT 1"}`)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", auth)
		resp, err := webClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	t.Run("a console login works under plain round robin", func(t *testing.T) {
		cc := newConsoleClient(t, web, &http.Transport{DialContext: from("127.0.0.2"), DisableKeepAlives: true})
		csrf := cc.login("alice", "alice-Pass-1") // the form, the post and the page: three requests, round robin
		for i := 0; i < 4; i++ {
			status, _, out := cc.sql("postgres", "SELECT current_user", csrf, nil)
			if status != 200 {
				t.Fatalf("console SQL %d through the balancer: %d %v", i, status, out)
			}
		}
	})

	t.Run("guesses on either instance count against one backoff", func(t *testing.T) {
		if _, err := connect("carol", "wrong-wrong", "127.0.0.2"); err == nil {
			t.Fatal("a wrong password logged in")
		}
		time.Sleep(200 * time.Millisecond)
		// Round robin: the next two connections land on both instances.
		for i := 0; i < 2; i++ {
			start := time.Now()
			c, err := connect("carol", "carol-Pass-3", "127.0.0.2")
			if err != nil {
				t.Fatal(err)
			}
			c.Close(context.Background())
			if i == 0 && time.Since(start) < 700*time.Millisecond {
				t.Fatalf("carol's next attempt got in after %v: the other instance did not count the failure", time.Since(start))
			}
		}
	})

	t.Run("a password change and a token revocation reach both instances within a second", func(t *testing.T) {
		req, _ := http.NewRequest("POST", web+"/_token", nil)
		req.SetBasicAuth("alice", "alice-Pass-1")
		resp, err := webClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var tok struct {
			Token string `json:"token"`
		}
		json.NewDecoder(resp.Body).Decode(&tok)
		resp.Body.Close()
		if tok.Token == "" {
			t.Fatalf("no token: %d", resp.StatusCode)
		}
		noteSecret(tok.Token)
		// The secret made for the first token reaches both instances.
		waitFor(t, 2*time.Second, "the token works on both instances", func() bool {
			return sqlAs("Bearer "+tok.Token) == 200 && sqlAs("Bearer "+tok.Token) == 200
		})
		// passwd changes the password and rotates the token secret.
		if _, errOut, code := runCLI(t, "alice-Pass-NEW\n", "user", "passwd", "alice", "--password-stdin", "-c", a.configPath()); code != 0 {
			t.Fatal(errOut)
		}
		noteSecret("alice-Pass-NEW")
		time.Sleep(time.Second)
		for i := 0; i < 2; i++ {
			if st := sqlAs("Bearer " + tok.Token); st == 200 {
				t.Fatalf("the revoked token still works on one instance (request %d)", i)
			}
			if c, err := connect("alice", "alice-Pass-1", "127.0.0.2"); err == nil {
				c.Close(context.Background())
				t.Fatalf("the old password still works on one instance (login %d)", i)
			}
		}
	})

	t.Run("draining one instance under connect-per-transaction load gives no errors", func(t *testing.T) {
		var ok, failed atomic.Int64
		var firstErr atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < 2000; n++ {
					select {
					case <-stop:
						return
					default:
					}
					c, err := connect("bob", "bob-Pass-2", "127.0.0.2")
					if err == nil {
						_, err = c.Exec(context.Background(), "SELECT 1")
						c.Close(context.Background())
					}
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						continue
					}
					ok.Add(1)
				}
			}()
		}
		time.Sleep(700 * time.Millisecond)
		a.signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(20 * time.Second):
			t.Fatal("A did not drain")
		}
		time.Sleep(700 * time.Millisecond)
		close(stop)
		wg.Wait()
		if failed.Load() > 0 || ok.Load() < 20 {
			t.Fatalf("%d transactions, %d failed (first: %v)", ok.Load(), failed.Load(), firstErr.Load())
		}
		t.Logf("%d connect-per-transaction clients, none failed, while A drained", ok.Load())
	})
	_ = b
}

package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func goroutines(t *testing.T, g *gateway) int {
	t.Helper()
	resp, err := http.Get(g.httpURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^go_goroutines (\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no go_goroutines in /metrics")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func openFDs(t *testing.T, g *gateway) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(g.cmd.Process.Pid), "fd"))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	return len(ents)
}

// TestAThousandReloadsLeakNothing reloads a configuration with a JWKS
// issuer and an auth_query pool (both per-snapshot resources) a thousand
// times; goroutines and file descriptors come back to where they were.
func TestAThousandReloadsLeakNothing(t *testing.T) {
	jwks := newJWKS(t)
	rsaKey, _, _ := newKeys(t)
	jwks.set(rsaKey.jwk())
	g := startGatewayWith(t, gwOptions{http: true, throttle: "failure_delay = \"10ms\"\nmax_delay = \"20ms\""}, fmt.Sprintf(`
[tokens]

[[jwt_issuers]]
issuer = "https://idp.test/"
jwks_url = %q

[auth_query]
user = "postgres"
password = %q

[[hba]]
method = "password"
`, jwks.srv.URL, backendPassword), []testUser{{name: "root", password: "root-Admin-1", extra: "roles = [\"admin\"]\nbackend_user = \"alice\"\n"}})
	// Warm up: one session, one HTTP request, one reload.
	c := g.mustConnect("root", "root-Admin-1", "postgres")
	queryOne(t, c, "SELECT 1")
	psql(t, g.connString("root", "root-Admin-1", "pgwarden"), "RELOAD")
	time.Sleep(500 * time.Millisecond)
	baseG, baseFD := goroutines(t, g), openFDs(t, g)

	cmd := exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", g.connString("root", "root-Admin-1", "pgwarden"))
	cmd.Stdin = strings.NewReader(strings.Repeat("RELOAD;\n", 1000))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("1000 reloads: %v\n%s", err, out)
	}
	queryOne(t, c, "SELECT 1")
	deadline := time.Now().Add(15 * time.Second)
	for {
		gs, fds := goroutines(t, g), openFDs(t, g)
		if gs <= baseG+3 && fds <= baseFD+3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 1000 reloads: %d goroutines (was %d), %d fds (was %d)", gs, baseG, fds, baseFD)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := strings.Count(g.log.String(), `"msg":"reloaded"`); n != 1001 {
		t.Fatalf("%d reloads logged, want 1001", n)
	}
}

// TestAMixedWorkloadLeavesNothingBehind runs sessions, failed logins,
// cancels, HTTP requests and refused connections, then checks that
// goroutines and file descriptors come back to where they were.
func TestAMixedWorkloadLeavesNothingBehind(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true, backend: "reuse = false"}, passwordRules,
		[]testUser{{name: "alice", password: "alice-Pass-1"}})
	warm := g.mustConnect("alice", "alice-Pass-1", "postgres")
	queryOne(t, warm, "SELECT 1")
	warm.Close(context.Background())
	httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, basic("alice", "alice-Pass-1"))
	time.Sleep(500 * time.Millisecond)
	baseG, baseFD := goroutines(t, g), openFDs(t, g)

	for i := 0; i < 20; i++ {
		c := g.mustConnect("alice", "alice-Pass-1", "postgres")
		queryOne(t, c, "SELECT 1")
		go func() { time.Sleep(50 * time.Millisecond); c.PgConn().CancelRequest(context.Background()) }()
		c.Exec(context.Background(), "SELECT pg_sleep(5)")
		c.Close(context.Background())
		g.connect("alice", "wrong-password", "postgres")
		r := dialRaw(t, g.addr())
		r.write([]byte("GET / HTTP/1.0\r\n\r\n"))
		r.conn.Close()
		httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, basic("alice", "alice-Pass-1"))
		httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, basic("alice", "nope-nope"))
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		gs, fds := goroutines(t, g), openFDs(t, g)
		// HTTP keep-alive connections of the test's own client may stay
		// open; allow for the default transport's idle connections.
		if gs <= baseG+6 && fds <= baseFD+4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the workload: %d goroutines (was %d), %d fds (was %d)", gs, baseG, fds, baseFD)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

package integration

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

func scrapeMetrics(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// sampleValue reads one series' value from the text format; -1 if absent.
func sampleValue(t *testing.T, text, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// The histograms an operator alerts on have samples with the labels the
// dashboard uses, and relayed bytes are counted while a session is open.
func TestMetricsAnOperatorCanAlertOn(t *testing.T) {
	g := startHTTPGateway(t, "default_database = \"postgres\"", `
[[hba]]
method = "password"
`, []testUser{{name: "alice", password: "alice-Pass-1"}})
	conn := g.mustConnect("alice", "alice-Pass-1", "postgres")
	defer conn.Close(context.Background())
	if _, _, code := httpDoStatus(t, g.httpURL()+"/_sql", `{"stmt": "SELECT 1"}`, basic("alice", "alice-Pass-1")); code != 200 {
		t.Fatalf("/_sql answered %d", code)
	}
	httpDoStatus(t, g.httpURL()+"/_sql", `{"stmt": "SELECT 1"}`, basic("alice", "wrong"))

	before := scrapeMetrics(t, g.httpURL())
	down0 := sampleValue(t, before, `pgwarden_relayed_bytes_total{direction="backend_to_client"}`)
	// 200 kB through the open session, which stays open.
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT length(string_agg(repeat('x', 1000), '')) FROM generate_series(1, 200)").Scan(&n); err != nil {
		t.Fatal(err)
	}
	var big string
	if err := conn.QueryRow(context.Background(), "SELECT repeat('y', 200000)").Scan(&big); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	var text string
	for {
		text = scrapeMetrics(t, g.httpURL())
		if sampleValue(t, text, `pgwarden_relayed_bytes_total{direction="backend_to_client"}`)-down0 >= 200000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relayed bytes of an open session are not counted as they flow: %v then %v", down0,
				sampleValue(t, text, `pgwarden_relayed_bytes_total{direction="backend_to_client"}`))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, series := range []string{
		`pgwarden_auth_duration_seconds_count{method="password",protocol="pg",result="ok"}`,
		`pgwarden_auth_duration_seconds_count{method="password",protocol="http",result="ok"}`,
		`pgwarden_auth_duration_seconds_count{method="password",protocol="http",result="failed"}`,
		`pgwarden_http_request_duration_seconds_count{route="POST /_sql",status="200"}`,
		`pgwarden_http_request_duration_seconds_count{route="POST /_sql",status="401"}`,
		`pgwarden_http_request_duration_seconds_count{route="GET /metrics",status="200"}`,
		`pgwarden_backend_connect_duration_seconds_count{protocol="pg"}`,
		`pgwarden_backend_connect_duration_seconds_count{protocol="http"}`,
		`pgwarden_backend_acquire_duration_seconds_count{protocol="pg"}`,
		`pgwarden_backend_acquire_duration_seconds_count{protocol="http"}`,
	} {
		if v := sampleValue(t, text, series); v < 1 {
			t.Errorf("%s = %v, want at least 1", series, v)
		}
	}
	if !regexp.MustCompile(`pgwarden_auth_duration_seconds_bucket\{method="password",protocol="pg",result="ok",le="0.001"\}`).MatchString(text) {
		t.Error("the auth histogram has no buckets")
	}
}

func httpDoStatus(t *testing.T, url, body string, hdr map[string]string) (string, http.Header, int) {
	t.Helper()
	status, h, _ := httpDo(t, "POST", url, body, hdr)
	return "", h, status
}

// The server runs the scheduler keeper (internal/awake): one P more than
// Go would give it, held while the server is busy; PGWARDEN_SYSMON_KEEPER
// = off leaves GOMAXPROCS as it is.
func TestTheServerKeepsGoSystemMonitorAwake(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the keeper runs on Linux only")
	}
	for _, off := range []bool{false, true} {
		var env []string
		want := float64(runtime.GOMAXPROCS(0) + 1)
		if off {
			env, want = []string{"PGWARDEN_SYSMON_KEEPER=off"}, float64(runtime.GOMAXPROCS(0))
		}
		g := startGatewayWith(t, gwOptions{http: true, env: env}, trustRules, nil)
		if got := sampleValue(t, scrapeMetrics(t, g.httpURL()), "go_sched_gomaxprocs_threads"); got != want {
			t.Errorf("keeper off %v: GOMAXPROCS %v, want %v", off, got, want)
		}
		g.kill()
	}
}

// A health check such as pg_isready opens a login and closes it when asked
// for a password: it proved nothing and failed nothing. Counted as failed
// (audit warn, result="failed"), a Docker or Kubernetes probe every few
// seconds set off any alert on failed logins; the attempts are now
// "abandoned", logged at info, and a real login right after is checked at
// once (the throttle never counted them).
func TestHealthChecksThatLeaveMidLoginAreAbandonedNotFailed(t *testing.T) {
	g := startHTTPGateway(t, "", "\n[[hba]]\nprotocol = \"pg\"\nmethod = \"scram-sha-256\"\n\n[[hba]]\nprotocol = \"http\"\nmethod = \"password\"\n",
		[]testUser{{name: "alice", password: "alice-Pass-1"}})
	for i := 0; i < 3; i++ {
		out, err := exec.Command(filepath.Join(pg.bindir, "pg_isready"), "-h", "127.0.0.1", "-p", strconv.Itoa(g.port), "-U", "alice", "-d", "postgres").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "accepting connections") {
			t.Fatalf("pg_isready: %v %s", err, out)
		}
	}
	g.waitLog(`"result":"abandoned"`, 3)
	text := scrapeMetrics(t, g.httpURL())
	if v := sampleValue(t, text, `pgwarden_auth_attempts_total{method="scram-sha-256",protocol="pg",result="abandoned"}`); v != 3 {
		t.Fatalf("abandoned logins counted %v, want 3:\n%s", v, text)
	}
	if v := sampleValue(t, text, `pgwarden_auth_attempts_total{method="scram-sha-256",protocol="pg",result="failed"}`); v > 0 {
		t.Fatalf("health checks counted as failed logins: %v", v)
	}
	for _, line := range strings.Split(g.log.String(), "\n") {
		if strings.Contains(line, `"result":"abandoned"`) && !strings.Contains(line, `"level":"info"`) {
			t.Fatalf("an abandoned login is not a warning: %s", line)
		}
	}
	// A client that leaves in the middle of SCRAM, after the server's
	// first message, is abandoned too.
	raw := dialRaw(t, g.addr())
	raw.send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "alice", "database": "postgres"}})
	if _, ok := raw.receive().(*pgproto3.AuthenticationSASL); !ok {
		t.Fatal("no SASL offer")
	}
	raw.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abcdefghijklmnop")})
	if _, ok := raw.receive().(*pgproto3.AuthenticationSASLContinue); !ok {
		t.Fatal("no server-first message")
	}
	raw.conn.Close()
	g.waitLog(`"result":"abandoned"`, 4)
	g.mustConnect("alice", "alice-Pass-1", "postgres")
}

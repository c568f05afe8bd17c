package integration

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/certs"
)

// pki is a test CA with certificates written to a folder.
type pki struct {
	dir string
	ca  *certs.Issued
}

func newPKI(t *testing.T, dir string, clients ...string) *pki {
	t.Helper()
	if err := certs.Init(dir, nil, clients); err != nil {
		t.Fatal(err)
	}
	return &pki{dir: dir, ca: loadCA(t, dir)}
}

func loadCA(t *testing.T, dir string) *certs.Issued {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	return &certs.Issued{Cert: leaf, Key: pair.PrivateKey.(crypto.Signer), DER: pair.Certificate[0]}
}

func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }

// clientTLS is a client's TLS configuration: it trusts p's CA, expects
// the server name localhost, and presents NAME.crt when name is not "".
func (p *pki) clientTLS(t *testing.T, name string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(p.path("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	if name != "" {
		c, err := tls.LoadX509KeyPair(p.path(name+".crt"), p.path(name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg
}

// httpsClient is an HTTP client over p.clientTLS(name).
func (p *pki) httpsClient(t *testing.T, name string) *http.Client {
	t.Helper()
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: p.clientTLS(t, name)}}
}

// postCurrentUser asks url for current_user through c, with Basic
// credentials for user when it is not "" (the password is not checked
// under method cert); it returns the status and the body.
func postCurrentUser(t *testing.T, c *http.Client, url, user string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(`{"stmt":"SELECT current_user"}`))
	req.Header.Set("Content-Type", "application/json")
	if user != "" {
		req.SetBasicAuth(user, "ignored-password")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startCRLGateway starts a gateway whose one rule is method cert, with
// client certificates for clients and tls.crl_file the (empty) list that
// pgwarden certs revoke writes.
func startCRLGateway(t *testing.T, clients ...string) (*gateway, *pki) {
	t.Helper()
	dir := t.TempDir()
	p := newPKI(t, filepath.Join(dir, "certs"), clients...)
	if out, errOut, code := runCLI(t, "", "certs", "revoke", "--dir", p.dir); code != 0 {
		t.Fatalf("an empty list: %s %s", out, errOut)
	}
	g := startTLSGatewayIn(t, dir, gwOptions{}, `crl_file = "certs/ca.crl"
[[hba]]
method = "cert"
`, nil)
	return g, p
}

// issueClient writes NAME.crt/NAME.key with the given validity.
func (p *pki) issueClient(t *testing.T, file, cn string, notBefore, notAfter time.Time) {
	t.Helper()
	c, err := p.ca.Issue(certs.Template{CommonName: cn, Client: true, NotBefore: notBefore, NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(p.dir, file); err != nil {
		t.Fatal(err)
	}
}

const tlsSection = `
[tls]
cert_file = "certs/server.crt"
key_file = "certs/server.key"
client_ca_file = "certs/ca.crt"
`

// startTLSGateway makes certificates under <dir>/certs and starts a
// gateway with [tls] and the given rules.
func startTLSGateway(t *testing.T, rules string, users []testUser, clients ...string) (*gateway, *pki) {
	t.Helper()
	dir := t.TempDir()
	p := newPKI(t, filepath.Join(dir, "certs"), clients...)
	return startTLSGatewayIn(t, dir, gwOptions{}, rules, users), p
}

// startTLSGatewayIn starts a gateway with [tls] whose certificates are (or
// are made) under dir/certs, with more [server] settings.
func startTLSGatewayIn(t *testing.T, dir string, o gwOptions, rules string, users []testUser) *gateway {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "certs", "ca.crt")); err != nil {
		newPKI(t, filepath.Join(dir, "certs"))
	}
	g := &gateway{t: t, dir: dir, port: freePort(), sockDir: dir, log: &lockedBuffer{}, done: make(chan struct{}), opts: o}
	g.writeConfig(tlsSection + rules)
	g.writeUsers(users)
	g.start()
	return g
}

func (g *gateway) tlsConnString(p *pki, user, extra string) string {
	return fmt.Sprintf("host=localhost port=%d user=%s dbname=postgres sslmode=verify-full sslrootcert=%s connect_timeout=20 %s",
		g.port, user, p.path("ca.crt"), extra)
}

func TestClientCertificatesWithPsql(t *testing.T) {
	g, p := startTLSGateway(t, `
[[hba]]
method = "cert"
`, nil, "alice", "bob")
	// Right certificate: in, as the CN's role.
	out, err := psql(t, g.tlsConnString(p, "alice", "sslcert="+p.path("alice.crt")+" sslkey="+p.path("alice.key")), "SELECT current_user")
	if err != nil || out != "alice" {
		t.Fatalf("cert login: %v %s", err, out)
	}
	cases := []struct {
		name, conn, want string
	}{
		{"no certificate", g.tlsConnString(p, "alice", ""), "FATAL:  connection requires a valid client certificate"},
		{"another user's certificate", g.tlsConnString(p, "alice", "sslcert="+p.path("bob.crt")+" sslkey="+p.path("bob.key")),
			`FATAL:  certificate authentication failed for user "alice"`},
	}
	// A certificate from a CA pgwarden does not trust.
	other := newPKI(t, filepath.Join(g.dir, "other"), "alice")
	cases = append(cases, struct{ name, conn, want string }{"foreign CA", g.tlsConnString(p, "alice", "sslcert="+other.path("alice.crt")+" sslkey="+other.path("alice.key")),
		"FATAL:  connection requires a valid client certificate"})
	// Expired and not-yet-valid certificates from the right CA.
	p.issueClient(t, "expired", "alice", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	p.issueClient(t, "future", "alice", time.Now().Add(24*time.Hour), time.Now().Add(48*time.Hour))
	for _, f := range []string{"expired", "future"} {
		cases = append(cases, struct{ name, conn, want string }{f + " certificate", g.tlsConnString(p, "alice", "sslcert="+p.path(f+".crt")+" sslkey="+p.path(f+".key")),
			"FATAL:  connection requires a valid client certificate"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := psql(t, tc.conn, "SELECT current_user")
			if err == nil || !containsLine(out, tc.want) {
				t.Fatalf("want %q, got %v: %s", tc.want, err, out)
			}
		})
	}
	// Plain TCP cannot satisfy method cert.
	out, err = psql(t, fmt.Sprintf("host=127.0.0.1 port=%d user=alice dbname=postgres sslmode=disable", g.port), "SELECT 1")
	if err == nil || !containsLine(out, "FATAL:  connection requires a valid client certificate") {
		t.Fatalf("plain TCP under cert: %v %s", err, out)
	}
}

// tls.crl_file, written by pgwarden certs revoke: a certificate the list
// names is refused from the moment the running server reads the new list
// (it watches the file), the session it opened ends then, and the others
// still log in and run.
func TestARevokedClientCertificateIsRefusedOnceTheListNamesIt(t *testing.T) {
	g, p := startCRLGateway(t, "alice", "bob")
	login := func(name string) (string, error) {
		return psql(t, g.tlsConnString(p, name, "sslcert="+p.path(name+".crt")+" sslkey="+p.path(name+".key")), "SELECT current_user")
	}
	if out, err := login("alice"); err != nil || out != "alice" {
		t.Fatalf("alice before the revocation: %v %s", err, out)
	}
	session := func(name string) *pgx.Conn {
		c, err := pgx.Connect(context.Background(), g.tlsConnString(p, name, "sslcert="+p.path(name+".crt")+" sslkey="+p.path(name+".key")))
		if err != nil {
			t.Fatalf("%s's session: %v", name, err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	aliceLive, bobLive := session("alice"), session("bob")
	if out, errOut, code := runCLI(t, "", "certs", "revoke", "--dir", p.dir, "alice"); code != 0 || !strings.Contains(out, "1 certificate(s) revoked") {
		t.Fatalf("revoke: %d %s %s", code, out, errOut)
	}
	g.waitLog("reloaded", 1)
	// The session alice's certificate opened ends with the reload; bob's
	// goes on.
	waitFor(t, 5*time.Second, "alice's session ends", func() bool {
		_, err := aliceLive.Exec(context.Background(), "SELECT 1")
		return err != nil
	})
	g.waitLog("a reload revoked the client certificate a wire session logged in with", 1)
	if got := queryOne(t, bobLive, "SELECT current_user"); got != "bob" {
		t.Fatal(got)
	}
	out, err := login("alice")
	if err == nil || !containsLine(out, "FATAL:  connection requires a valid client certificate") {
		t.Fatalf("alice after the revocation: %v %s", err, out)
	}
	g.waitLog("is revoked", 1)
	if out, err := login("bob"); err != nil || out != "bob" {
		t.Fatalf("bob after alice's revocation: %v %s", err, out)
	}
}

func TestClientcertVerifyFullOnTopOfPassword(t *testing.T) {
	g, p := startTLSGateway(t, `
[[hba]]
method = "scram-sha-256"
clientcert = "verify-full"
`, []testUser{{name: "alice", password: "alice-Pass-1"}, {name: "bob", password: "bob-Pass-2"}}, "alice")
	certOpts := "sslcert=" + p.path("alice.crt") + " sslkey=" + p.path("alice.key")
	out, err := psql(t, g.tlsConnString(p, "alice", certOpts+" password=alice-Pass-1"), "SELECT current_user")
	if err != nil || out != "alice" {
		t.Fatalf("password plus certificate: %v %s", err, out)
	}
	out, _ = psql(t, g.tlsConnString(p, "alice", "password=alice-Pass-1"), "SELECT 1")
	if !containsLine(out, "FATAL:  connection requires a valid client certificate") {
		t.Fatalf("password without certificate: %s", out)
	}
	out, _ = psql(t, g.tlsConnString(p, "bob", certOpts+" password=bob-Pass-2"), "SELECT 1")
	if !containsLine(out, `FATAL:  certificate authentication failed for user "bob"`) {
		t.Fatalf("alice's certificate for bob: %s", out)
	}
}

func TestSCRAMOverPlainTCPAndWithChannelBinding(t *testing.T) {
	g, p := startTLSGateway(t, `
[[hba]]
method = "scram-sha-256"
`, []testUser{{name: "alice", password: "alice-Pass-1"}, {name: "bob", password: "bob-Bcrypt-2", algo: "bcrypt"}})
	ctx := context.Background()
	// pgx, channel binding required: SCRAM-SHA-256-PLUS over TLS.
	c, err := pgx.Connect(ctx, g.tlsConnString(p, "alice", "password=alice-Pass-1 channel_binding=require"))
	if err != nil {
		t.Fatalf("SCRAM-PLUS: %v", err)
	}
	defer c.Close(ctx)
	if got := queryOne(t, c, "SELECT current_user"); got != "alice" {
		t.Fatal(got)
	}
	// pgx over plain TCP: SCRAM-SHA-256 without binding.
	plain := g.mustConnect("alice", "alice-Pass-1", "postgres")
	queryOne(t, plain, "SELECT 1")
	// psql (libpq) with channel binding required.
	out, err := psql(t, g.tlsConnString(p, "alice", "password=alice-Pass-1 channel_binding=require"), "SELECT 'bound'")
	if err != nil || out != "bound" {
		t.Fatalf("psql channel_binding=require: %v %s", err, out)
	}
	g.waitLog(`"method":"scram-sha-256","ssl":true,"result":"ok"`, 2)

	for _, tc := range []struct{ user, password string }{
		{"alice", "wrong-password"}, {"mallory", "alice-Pass-1"}, {"bob", "bob-Bcrypt-2"},
	} {
		_, err := g.connect(tc.user, tc.password, "postgres")
		wantPgError(t, err, "28P01", fmt.Sprintf("password authentication failed for user %q", tc.user))
	}
	g.waitLog("stored hash is not a SCRAM verifier", 1)
}

func TestPasswordMethodStillWorksForSCRAMStoredUsers(t *testing.T) {
	g := startGateway(t, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	g.mustConnect("alice", "alice-Pass-1", "postgres")
}

func TestSSLRequestWithPlaintextInTheSameWriteIsRefused(t *testing.T) {
	g, _ := startTLSGateway(t, `
[[hba]]
method = "trust"
`, nil)
	r := dialRaw(t, g.addr())
	r.write(append(requestBytes(80877103), startupBytes(3, 0, "user", "alice", "database", "postgres")...))
	r.expectError("08P01", "received unencrypted data after SSL request")
	r.expectClosed()

	// Plaintext sent after the 'S' instead of a TLS handshake.
	r2 := dialRaw(t, g.addr())
	r2.write(requestBytes(80877103))
	if b := r2.readByte(); b != 'S' {
		t.Fatalf("SSLRequest answered %q", b)
	}
	r2.write(startupBytes(3, 0, "user", "alice", "database", "postgres"))
	r2.expectError("08P01", "received unencrypted data after SSL request")
	g.waitLog(`"result":"ok"`, 0)
}

func TestASecondSSLRequestInsideTLSIsRefused(t *testing.T) {
	g, p := startTLSGateway(t, "[[hba]]\nmethod = \"trust\"\n", nil)
	conn := tlsDialPG(t, g, p, "")
	conn.Write(requestBytes(80877103))
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	n, _ := conn.Read(buf)
	if n == 0 || buf[0] != 'E' || !containsBytes(buf[:n], "SSL negotiation was already done") {
		t.Fatalf("second SSLRequest answered %q", buf[:n])
	}
}

// A GSSENCRequest inside TLS (after an SSLRequest, or on direct TLS) is
// refused as PostgreSQL refuses it: GSSAPI encryption cannot start inside
// TLS. Before December 2026 it was answered 'N' and the connection waited
// for a StartupMessage until auth_timeout.
func TestAGSSENCRequestInsideTLSIsRefused(t *testing.T) {
	g, p := startTLSGateway(t, "[[hba]]\nmethod = \"trust\"\n", nil)
	refused := func(how string, conn *tls.Conn) {
		t.Helper()
		defer conn.Close()
		conn.Write(requestBytes(80877104))
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 512)
		n, _ := conn.Read(buf)
		if n == 0 || buf[0] != 'E' || !containsBytes(buf[:n], "08P01") || !containsBytes(buf[:n], "GSSAPI encryption requested inside an SSL connection") {
			t.Fatalf("%s: GSSENCRequest answered %q", how, buf[:n])
		}
	}
	refused("after SSLRequest", tlsDialPG(t, g, p, ""))
	cfg := p.clientTLS(t, "")
	cfg.NextProtos = []string{"postgresql"}
	direct, err := tls.Dial("tcp", g.addr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	refused("direct TLS", direct)
	// Before TLS, or after an SSLRequest answered 'N', it is answered 'N'.
	r := dialRaw(t, g.addr())
	r.write(requestBytes(80877104))
	if b := r.readByte(); b != 'N' {
		t.Fatalf("GSSENCRequest answered %q", b)
	}
}

func TestDirectTLSWithALPN(t *testing.T) {
	g, p := startTLSGateway(t, `
[[hba]]
method = "scram-sha-256"
`, []testUser{{name: "alice", password: "alice-Pass-1"}})
	ctx := context.Background()
	c, err := pgx.Connect(ctx, g.tlsConnString(p, "alice", "password=alice-Pass-1 sslnegotiation=direct"))
	if err != nil {
		t.Fatalf("sslnegotiation=direct: %v", err)
	}
	defer c.Close(ctx)
	queryOne(t, c, "SELECT 1")
	// Direct TLS without ALPN postgresql is closed after the handshake.
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(p.path("ca.crt"))
	pool.AppendCertsFromPEM(pem)
	tc, err := tls.Dial("tcp", g.addr(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.Write(startupBytes(3, 0, "user", "alice", "database", "postgres"))
	tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if n, _ := tc.Read(b[:]); n != 0 {
		t.Fatalf("direct TLS without ALPN got an answer %q", b[:n])
	}
}

func TestSSLOnRuleRefusesPlainTCP(t *testing.T) {
	g, p := startTLSGateway(t, `
[[hba]]
ssl = "on"
method = "scram-sha-256"
`, []testUser{{name: "alice", password: "alice-Pass-1"}})
	_, err := g.connect("alice", "alice-Pass-1", "postgres")
	wantPgError(t, err, "28000", `no HBA rule for host "127.0.0.1", user "alice", database "postgres", SSL off`)
	out, err := psql(t, g.tlsConnString(p, "alice", "password=alice-Pass-1"), "SELECT 'tls'")
	if err != nil || out != "tls" {
		t.Fatalf("TLS under ssl=on: %v %s", err, out)
	}
}

func TestRotatedServerCertificateServesNewConnectionsAfterSIGHUP(t *testing.T) {
	g, p := startTLSGateway(t, `
[[hba]]
method = "scram-sha-256"
`, []testUser{{name: "alice", password: "alice-Pass-1"}})
	live, err := pgx.Connect(context.Background(), g.tlsConnString(p, "alice", "password=alice-Pass-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close(context.Background())
	before := serverCertSerial(t, g, p)
	srv, err := p.ca.Issue(certs.Template{CommonName: "localhost", Hosts: certs.DefaultHosts})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Write(p.dir, "server"); err != nil {
		t.Fatal(err)
	}
	g.signal(syscall.SIGHUP)
	g.waitLog(`"msg":"reloaded"`, 1)
	after := serverCertSerial(t, g, p)
	if before == after || after != srv.Cert.SerialNumber.String() {
		t.Fatalf("new connections still see the old certificate (%s -> %s)", before, after)
	}
	if got := queryOne(t, live, "SELECT 'still up'"); got != "still up" {
		t.Fatal(got)
	}
	// A key that does not pair with the certificate fails the reload loudly.
	other, _ := p.ca.Issue(certs.Template{CommonName: "x"})
	other.Write(p.dir, "mismatch")
	os.Rename(p.path("mismatch.key"), p.path("server.key"))
	g.signal(syscall.SIGHUP)
	g.waitLog("reload failed", 1)
	if serverCertSerial(t, g, p) != after {
		t.Fatal("a failed reload changed the certificate")
	}
}

func TestBackendOverTLSWithVerifyFullAndCertificateLogin(t *testing.T) {
	// A backend that accepts TLS connections only.
	c, err := startClusterTLS(t)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Destroy()
	caPath := filepath.Join(c.dir, "pki", "ca.crt")
	g := startGatewayWith(t, gwOptions{backendPort: c.port,
		backend: fmt.Sprintf("sslmode = \"verify-full\"\nsslrootcert = %q", caPath)}, passwordRules,
		[]testUser{{name: "alice", password: "alice-Pass-1"}})
	conn := g.mustConnect("alice", "alice-Pass-1", "postgres")
	if got := queryOne(t, conn, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"); got != "true" {
		t.Fatalf("backend session is not TLS: %s", got)
	}
	// The gateway's own client certificate logs in to the backend
	// (backend rule: hostssl ... cert for svc_etl).
	g2 := startGatewayWith(t, gwOptions{backendPort: c.port, noSharedPassword: true,
		backend: fmt.Sprintf("sslmode = \"verify-full\"\nsslrootcert = %q\nsslcert = %q\nsslkey = %q", caPath,
			filepath.Join(c.dir, "pki", "svc_etl.crt"), filepath.Join(c.dir, "pki", "svc_etl.key"))},
		passwordRules, []testUser{{name: "svc_etl", password: "svc-Pass-5"}})
	conn2 := g2.mustConnect("svc_etl", "svc-Pass-5", "postgres")
	if got := queryOne(t, conn2, "SELECT current_user"); got != "svc_etl" {
		t.Fatal(got)
	}
	// The backend refuses plain connections: sslmode=disable fails there.
	g3 := startGatewayWith(t, gwOptions{backendPort: c.port}, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	_, err = g3.connect("alice", "alice-Pass-1", "postgres")
	if pe := pgError(t, err); pe.Code != "28000" {
		t.Fatalf("plain connection to a TLS-only backend: %v", err)
	}
}

// A reload that turns on backend TLS reaches every backend login from then
// on: the wire's parked backends and the HTTP pools were made under the
// old settings and are not used again. Before, a reload from sslmode
// "disable" to "require" went on reusing plaintext backends on the wire
// (up to max_lifetime) and over HTTP (as long as the pool stayed busy).
func TestAReloadThatTurnsOnBackendTLSReachesReusedAndPooledBackends(t *testing.T) {
	c, err := startClusterTLSWith(t, "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Destroy()
	o := gwOptions{http: true, backendPort: c.port, backend: `sslmode = "disable"`}
	g := startGatewayWith(t, o, passwordRules+httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	const sslQuery = "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
	wire := func() string {
		t.Helper()
		conn := g.mustConnect("alice", "alice-Pass-1", "postgres")
		defer conn.Close(context.Background())
		return queryOne(t, conn, sslQuery)
	}
	overHTTP := func() string {
		t.Helper()
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", jsonText(t, map[string]any{"stmt": sslQuery}), basic("alice", "alice-Pass-1"))
		if status != 200 {
			t.Fatalf("HTTP: %d %v", status, out)
		}
		return fmt.Sprint(out["rows"])
	}
	// Park a plaintext backend and fill an HTTP pool.
	if wire() != "false" || wire() != "false" || overHTTP() != "[[false]]" {
		t.Fatal("the backend sessions are TLS under sslmode = disable")
	}
	g.reloadAfter(func() {
		g.opts.backend = `sslmode = "require"`
		g.writeConfig(passwordRules + httpRules)
	})
	for i := 0; i < 3; i++ {
		if got := wire(); got != "true" {
			t.Fatalf("wire session %d after the reload: ssl %s", i, got)
		}
		if got := overHTTP(); got != "[[true]]" {
			t.Fatalf("HTTP request %d after the reload: ssl %s", i, got)
		}
	}
}

// startClusterTLS starts a cluster with ssl = on whose pg_hba.conf takes
// TLS connections only, with certificates under <dir>/pki.
func startClusterTLS(t *testing.T) (*pgCluster, error) {
	return startClusterTLSWith(t, "local all all trust\nhostssl all svc_etl 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
}

// startClusterTLSWith starts a cluster with ssl = on and the given
// pg_hba.conf, with certificates under <dir>/pki.
func startClusterTLSWith(t *testing.T, hba string) (*pgCluster, error) {
	c, err := startCluster("")
	if err != nil {
		return nil, err
	}
	if err := createRoles(c); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(c.data, "pg_hba.conf"), []byte(hba), 0o644); err != nil {
		return nil, err
	}
	if _, err := enableClusterTLS(c); err != nil {
		return nil, err
	}
	return c, nil
}

// enableClusterTLS turns ssl on in c, with a server certificate for
// 127.0.0.1 and localhost and a client certificate for each of clients
// (svc_etl when none is named) from a CA of its own, under <dir>/pki, and
// restarts c. It returns that folder.
func enableClusterTLS(c *pgCluster, clients ...string) (string, error) {
	if len(clients) == 0 {
		clients = []string{"svc_etl"}
	}
	pkiDir := filepath.Join(c.dir, "pki")
	if err := certs.Init(pkiDir, []string{"127.0.0.1", "localhost"}, clients); err != nil {
		return "", err
	}
	if c.asUser != "" {
		u, _ := user.Lookup(c.asUser)
		uid, _ := strconv.Atoi(u.Uid)
		filepath.Walk(pkiDir, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, uid, -1) })
	}
	conf := fmt.Sprintf("\nssl = on\nssl_cert_file = '%s/server.crt'\nssl_key_file = '%s/server.key'\nssl_ca_file = '%s/ca.crt'\n", pkiDir, pkiDir, pkiDir)
	f, err := os.OpenFile(filepath.Join(c.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return "", err
	}
	f.WriteString(conf)
	f.Close()
	if err := c.Stop(); err != nil {
		return "", err
	}
	return pkiDir, c.Start()
}

func containsLine(out, want string) bool { return strings.Contains(out, want) }

func containsBytes(b []byte, s string) bool { return strings.Contains(string(b), s) }

// tlsDialPG opens a TLS session the Postgres way: SSLRequest, 'S',
// handshake; with client NAME's certificate when name is not "".
func tlsDialPG(t *testing.T, g *gateway, p *pki, name string) *tls.Conn {
	t.Helper()
	r := dialRaw(t, g.addr())
	r.write(requestBytes(80877103))
	if b := r.readByte(); b != 'S' {
		t.Fatalf("SSLRequest answered %q", b)
	}
	tc := tls.Client(r.conn, p.clientTLS(t, name))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc
}

// serverCertSerial is the serial number of the certificate a new
// connection is served.
func serverCertSerial(t *testing.T, g *gateway, p *pki) string {
	t.Helper()
	tc := tlsDialPG(t, g, p, "")
	defer tc.Close()
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// ticketCounter is a client session cache that counts the session
// tickets it is given.
type ticketCounter struct {
	tls.ClientSessionCache
	tickets atomic.Int32
}

func (c *ticketCounter) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.tickets.Add(1)
	}
	c.ClientSessionCache.Put(key, cs)
}

// The wire sends no TLS session tickets, as PostgreSQL does not: its
// clients never resume a session, so a ticket costs a TLS login CPU for
// nothing. HTTPS, whose clients do resume, keeps them.
func TestTLSSessionsResumeOverHTTPSButTheWireSendsNoTickets(t *testing.T) {
	g := startTLSGatewayIn(t, t.TempDir(), gwOptions{http: true, server: "http_tls = true"}, trustRules, nil)

	cache := &ticketCounter{ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	wireLogin := func() bool {
		t.Helper()
		r := dialRaw(t, g.addr())
		defer r.conn.Close()
		r.startTLSWith(&tls.Config{InsecureSkipVerify: true, ServerName: "localhost", ClientSessionCache: cache})
		r.write(startupBytes(3, 0, "user", "alice", "database", "postgres"))
		// Reading the answer also reads any ticket the server sent.
		for {
			if _, ok := r.receive().(*pgproto3.ReadyForQuery); ok {
				return r.conn.(*tls.Conn).ConnectionState().DidResume
			}
		}
	}
	for i := 0; i < 2; i++ {
		if wireLogin() {
			t.Fatalf("wire login %d resumed a TLS session", i+1)
		}
	}
	if n := cache.tickets.Load(); n != 0 {
		t.Fatalf("the wire sent %d session tickets", n)
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8)}}}
	url := fmt.Sprintf("https://127.0.0.1:%d/healthz", g.port+1)
	resumed := false
	for i := 0; i < 3 && !resumed; i++ {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		resumed = resp.TLS != nil && resp.TLS.DidResume
	}
	if !resumed {
		t.Fatal("HTTPS never resumed a TLS session")
	}
}

// issueTwoCommonNames writes file.crt/file.key, a client certificate from
// p's CA whose subject holds two common names, first then second. Go's
// x509 keeps the last as Subject.CommonName; PostgreSQL reads the first.
func (p *pki) issueTwoCommonNames(t *testing.T, file, first, second string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// pkix.Name cannot say this (a common name in ExtraNames replaces
	// CommonName), so the subject is written by hand.
	cn := asn1.ObjectIdentifier{2, 5, 4, 3}
	subject, err := asn1.Marshal(pkix.RDNSequence{{{Type: cn, Value: first}}, {{Type: cn, Value: second}}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		RawSubject:   subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca.Cert, key.Public(), p.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	if leaf.Subject.CommonName != second || len(leaf.Subject.Names) != 2 {
		t.Fatalf("the test's premise: Go reads CN %q of %v", leaf.Subject.CommonName, leaf.Subject.Names)
	}
	issued := &certs.Issued{Cert: leaf, Key: key, DER: der}
	if err := issued.Write(p.dir, file); err != nil {
		t.Fatal(err)
	}
}

// A certificate whose subject names two users logs in as neither. Before,
// Go's last common name counted, PostgreSQL's first: a certificate issued
// to "alice" with a second common name "postgres" appended (a CA that lets
// requesters add subject attributes) logged in as postgres under method cert
// and clientcert=verify-full, on the wire and over HTTPS.
func TestACertificateWithTwoCommonNamesProvesNeither(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, filepath.Join(dir, "certs"), "alice")
	p.issueTwoCommonNames(t, "two", "alice", "postgres")
	port := freePortPair()
	g := &gateway{t: t, dir: dir, port: port, sockDir: dir, log: &lockedBuffer{}, done: make(chan struct{}),
		opts: gwOptions{http: true, server: "http_tls = true"}}
	g.writeConfig(tlsSection + `
[[hba]]
protocol = "pg"
database = ["template1"]
method = "trust"
clientcert = "verify-full"
[[hba]]
method = "cert"
`)
	g.writeUsers(nil)
	g.start()
	two := "sslcert=" + p.path("two.crt") + " sslkey=" + p.path("two.key")
	for _, user := range []string{"postgres", "alice"} {
		for _, db := range []string{"postgres", "template1"} {
			conn := strings.Replace(g.tlsConnString(p, user, two), "dbname=postgres", "dbname="+db, 1)
			out, err := psql(t, conn, "SELECT current_user")
			if err == nil || !strings.Contains(out, "FATAL:  certificate authentication failed for user \""+user+"\"") {
				t.Errorf("%s to %s with a two-name certificate: %v %s", user, db, err, out)
			}
		}
	}
	// The one-name certificate still works.
	if out, err := psql(t, g.tlsConnString(p, "alice", "sslcert="+p.path("alice.crt")+" sslkey="+p.path("alice.key")), "SELECT current_user"); err != nil || out != "alice" {
		t.Fatalf("alice's own certificate: %v %s", err, out)
	}
	client := p.httpsClient(t, "two")
	for _, user := range []string{"", "postgres", "alice"} {
		if status, b := postCurrentUser(t, client, fmt.Sprintf("https://localhost:%d/_sql?db=postgres", port+1), user); status != 401 {
			t.Errorf("HTTPS as %q with a two-name certificate: %d %s", user, status, b)
		}
	}
}

// channel_binding = "require" makes the backend prove itself with
// SCRAM-SHA-256-PLUS over TLS, without a CA, on the wire and over HTTP.
// The HTTP pools read the backend's messages through the memory gate:
// until December 2026 it wrapped pgconn's connection, which then was no
// *tls.Conn, so HTTP backends logged in without channel binding and, with
// it required, every request failed 08006.
func TestChannelBindingRequiredHoldsOnTheWireAndOverHTTP(t *testing.T) {
	c, err := startClusterTLSWith(t, "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Destroy()
	o := gwOptions{http: true, backendPort: c.port, backend: "sslmode = \"require\"\nchannel_binding = \"require\"\nrequire_auth = \"scram-sha-256\""}
	g := startGatewayWith(t, o, passwordRules+httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	const sslQuery = "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
	conn := g.mustConnect("alice", "alice-Pass-1", "postgres")
	if got := queryOne(t, conn, sslQuery); got != "true" {
		t.Fatalf("wire: ssl %s", got)
	}
	conn.Close(context.Background())
	for i := 0; i < 2; i++ {
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", jsonText(t, map[string]any{"stmt": sslQuery}), basic("alice", "alice-Pass-1"))
		if status != 200 || fmt.Sprint(out["rows"]) != "[[true]]" {
			t.Fatalf("HTTP request %d under channel_binding = require: %d %v", i, status, out)
		}
	}
	// A large value still passes the HTTP pools' memory gate.
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt": "SELECT length(repeat('x', 1000000) || '')"}`, basic("alice", "alice-Pass-1"))
	if status != 200 || fmt.Sprint(out["rows"]) != "[[1000000]]" {
		t.Fatalf("a large value: %d %v", status, out)
	}
}

// A SCRAM pass-through login over TLS binds to the channel too
// (SCRAM-SHA-256-PLUS with the client's keys), so channel_binding =
// "require" and require_auth = "scram-sha-256" hold for it: PostgreSQL
// checks the binding against its own certificate.
func TestSCRAMPassthroughBindsToTheBackendsTLSChannel(t *testing.T) {
	c, err := startClusterTLSWith(t, "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Destroy()
	o := gwOptions{noSharedPassword: true, backendPort: c.port,
		backend: "passthrough = true\nsslmode = \"require\"\nchannel_binding = \"require\"\nrequire_auth = \"scram-sha-256\""}
	g := startGatewayWith(t, o, fmt.Sprintf(`
[auth_query]
user = "alice"
password = %q
query = "SELECT rolpassword FROM pg_authid WHERE rolname = $1"

[[hba]]
method = "scram-sha-256"
`, backendPassword), nil)
	if err := c.Exec("GRANT SELECT ON pg_authid TO alice"); err != nil {
		t.Fatal(err)
	}
	conn := g.mustConnect("bob", backendPassword, "postgres")
	if got := queryOne(t, conn, "SELECT current_user || ' ' || ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"); got != "bob true" {
		t.Fatalf("a pass-through login over TLS: %s", got)
	}
	conn.Close(context.Background())
	_, err = g.connect("bob", "wrong-Pass-9", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "bob"`)
}

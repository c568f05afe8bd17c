package integration

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

const oauthIssuer = "https://idp.test/"

// oauthGateway is a TLS gateway (wire and HTTPS) whose oauth rule takes
// tokens of a test identity provider whose JWKS the test serves on
// loopback.
func oauthGateway(t *testing.T) (*gateway, *testKey) {
	t.Helper()
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	key := &testKey{"oauth-rsa-1", "RS256", rk, jwt.SigningMethodRS256}
	jwks := newJWKS(t)
	jwks.set(key.jwk())
	dir := t.TempDir()
	newPKI(t, filepath.Join(dir, "certs"))
	g := &gateway{t: t, dir: dir, port: freePortPair(), sockDir: dir, log: &lockedBuffer{}, done: make(chan struct{}),
		opts: gwOptions{http: true, server: "http_tls = true"}}
	g.writeConfig(tlsSection + fmt.Sprintf(`
[[jwt_issuers]]
issuer = %q
jwks_url = %q
audience = "pgwarden"
username_claim = "email"
algorithms = ["RS256"]
role_claim = "pg_role"
roles_allowed = ["app_rw"]

[[hba]]
method = "oauth"
issuer = %q
scope = "openid pg"
`, oauthIssuer, jwks.srv.URL, oauthIssuer))
	g.writeUsers([]testUser{{name: "alice", extra: "[user.jwt]\niss = \"" + oauthIssuer + "\"\nusername = \"alice@corp\"\n"}})
	g.start()
	return g, key
}

func oauthToken(t *testing.T, k *testKey, claims jwt.MapClaims) string {
	base := jwt.MapClaims{"iss": oauthIssuer, "aud": "pgwarden", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
		"scope": "openid pg"}
	for c, v := range claims {
		base[c] = v
		if v == nil {
			delete(base, c) // a claim left out
		}
	}
	return k.sign(t, base, nil)
}

// connectOAuth logs in with pgx's OAuthTokenProvider, as an application
// using single sign-on does.
func connectOAuth(g *gateway, user, sslmode, token string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=postgres sslmode=%s connect_timeout=20", g.port, user, sslmode))
	if err != nil {
		return nil, err
	}
	cfg.OAuthTokenProvider = func(context.Context) (string, error) { return token, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return pgx.ConnectConfig(ctx, cfg)
}

func TestPgxLogsInWithOAuthBearerThroughPgwarden(t *testing.T) {
	g, key := oauthGateway(t)
	c, err := connectOAuth(g, "alice", "require", oauthToken(t, key, jwt.MapClaims{"email": "alice@corp"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if got := queryOne(t, c, "SELECT current_user"); got != "alice" {
		t.Fatalf("current_user %s", got)
	}
}

func TestOAuthRefusesBadTokensAndPlainTCP(t *testing.T) {
	g, key := oauthGateway(t)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	stranger := &testKey{"unknown-kid", "RS256", other, jwt.SigningMethodRS256}
	for name, tok := range map[string]string{
		"expired":        oauthToken(t, key, jwt.MapClaims{"email": "alice@corp", "exp": time.Now().Add(-time.Hour).Unix()}),
		"other audience": oauthToken(t, key, jwt.MapClaims{"email": "alice@corp", "aud": "someone-else"}),
		"unknown key":    oauthToken(t, stranger, jwt.MapClaims{"email": "alice@corp"}),
		"another user":   oauthToken(t, key, jwt.MapClaims{"email": "bob@corp"}),
	} {
		c, err := connectOAuth(g, "alice", "require", tok)
		if err == nil {
			c.Close(context.Background())
			t.Fatalf("a token with %s logged in", name)
		}
		if !strings.Contains(err.Error(), "invalid_token") {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// A bearer token is a secret: over plain TCP no oauth rule matches.
	_, err := connectOAuth(g, "alice", "disable", oauthToken(t, key, jwt.MapClaims{"email": "alice@corp"}))
	wantPgError(t, err, "28000", `no HBA rule for host "127.0.0.1", user "alice", database "postgres", SSL off`)
}

func TestARoleClaimLogsInAPersonWithoutAUsersFileEntry(t *testing.T) {
	g, key := oauthGateway(t)
	c, err := connectOAuth(g, "ann@corp", "require", oauthToken(t, key, jwt.MapClaims{"email": "ann@corp", "pg_role": "app_rw"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if got := queryOne(t, c, "SELECT current_user"); got != "app_rw" {
		t.Fatalf("current_user %s, want the role of the claim", got)
	}
	// A role not in roles_allowed, a missing claim, a claim of the wrong
	// type: refused, the reason in the audit log.
	for name, claims := range map[string]jwt.MapClaims{
		"a role not allowed": {"email": "ann@corp", "pg_role": "postgres"},
		"no role claim":      {"email": "ann@corp"},
		"a list as the role": {"email": "ann@corp", "pg_role": []string{"app_rw"}},
	} {
		if c, err := connectOAuth(g, "ann@corp", "require", oauthToken(t, key, claims)); err == nil {
			c.Close(context.Background())
			t.Fatalf("%s logged in", name)
		}
	}
	// A person whose name is a users-file entry not bound to them cannot
	// take that name through a role claim.
	if c, err := connectOAuth(g, "alice", "require", oauthToken(t, key, jwt.MapClaims{"email": "alice", "pg_role": "app_rw"})); err == nil {
		c.Close(context.Background())
		t.Fatal("a role claim took the name of a users-file entry")
	}
	g.waitLog(`\"alice\" is a users-file entry not bound to this identity`, 1)
	// pgwarden explain shows which claim decided.
	out, stderr, code := runCLI(t, "", "explain", "-c", g.configPath(), "--user", "ann@corp", "--database", "postgres",
		"--address", "127.0.0.1", "--ssl", "--token", oauthToken(t, key, jwt.MapClaims{"email": "ann@corp", "pg_role": "app_rw"}))
	if code != 0 || !strings.Contains(out, `token: user "ann@corp" (no users-file entry), backend role "app_rw" from claim "pg_role"`) {
		t.Fatalf("explain: %s %s", out, stderr)
	}
	out, _, _ = runCLI(t, "", "explain", "-c", g.configPath(), "--user", "ann@corp", "--database", "postgres",
		"--address", "127.0.0.1", "--ssl", "--token", oauthToken(t, key, jwt.MapClaims{"email": "ann@corp", "pg_role": "postgres"}))
	if !strings.Contains(out, `token: refused by rule 1: bad token: claim "pg_role" names role "postgres", which is not in roles_allowed`) {
		t.Fatalf("explain of a refused role: %s", out)
	}
	for _, why := range []string{`names role \"postgres\", which is not in roles_allowed`, `no \"pg_role\" claim (role_claim)`, `claim \"pg_role\" (role_claim) is not a string`} {
		g.waitLog(why, 1) // the audit line says which claim decided
	}
}

func TestTheOAuthDiscoveryExchangeByteByByte(t *testing.T) {
	g, _ := oauthGateway(t)
	r := dialRaw(t, g.addr())
	r.write(requestBytes(80877103))
	if b := r.readByte(); b != 'S' {
		t.Fatalf("SSLRequest answered %q", b)
	}
	tc := tls.Client(r.conn, &tls.Config{InsecureSkipVerify: true})
	fe := pgproto3.NewFrontend(tc, tc)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "alice", "database": "postgres"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	recv := func() pgproto3.BackendMessage {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	sasl, ok := recv().(*pgproto3.AuthenticationSASL)
	if !ok || len(sasl.AuthMechanisms) != 1 || sasl.AuthMechanisms[0] != "OAUTHBEARER" {
		t.Fatalf("want AuthenticationSASL [OAUTHBEARER], got %+v", sasl)
	}
	// libpq 18's first step: no token, to learn where to get one.
	fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "OAUTHBEARER", Data: []byte("n,,\x01auth=\x01\x01")})
	fe.Flush()
	cont, ok := recv().(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		t.Fatalf("want AuthenticationSASLContinue, got %T", cont)
	}
	want := `{"status":"invalid_token","openid-configuration":"https://idp.test/.well-known/openid-configuration","scope":"openid pg"}`
	if string(cont.Data) != want {
		t.Fatalf("discovery:\n got %s\nwant %s", cont.Data, want)
	}
	var doc map[string]string
	if err := json.Unmarshal(cont.Data, &doc); err != nil || doc["status"] != "invalid_token" {
		t.Fatalf("not PostgreSQL 18's JSON: %v", err)
	}
	// RFC 7628: the client ends the failed exchange with 0x01.
	fe.Send(&pgproto3.SASLResponse{Data: []byte{0x01}})
	fe.Flush()
	e, ok := recv().(*pgproto3.ErrorResponse)
	if !ok || e.Code != "28000" || e.Message != `OAuth bearer authentication failed for user "alice"` {
		t.Fatalf("want 28000 OAuth bearer authentication failed, got %+v", e)
	}
	g.waitLog("oauth discovery", 1)
}

func TestOAuthOverHTTPIsABearerTokenWithDiscoveryHints(t *testing.T) {
	g, key := oauthGateway(t)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	post := func(auth string) (*http.Response, string) {
		req, _ := http.NewRequest("POST", fmt.Sprintf("https://127.0.0.1:%d/_sql?db=postgres", g.port+1), strings.NewReader(`{"stmt":"SELECT current_user"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", auth)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := post("Bearer " + oauthToken(t, key, jwt.MapClaims{"email": "alice@corp"}))
	if resp.StatusCode != 200 || !strings.Contains(body, `[["alice"]]`) {
		t.Fatalf("a good token: %d %s", resp.StatusCode, body)
	}
	resp, body = post("Bearer " + oauthToken(t, key, jwt.MapClaims{"email": "alice@corp", "aud": "other"}))
	ch := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != 401 || !strings.HasPrefix(ch, `Bearer error="invalid_token"`) || !strings.Contains(ch, "resource_metadata=") ||
		!strings.Contains(ch, `scope="openid pg"`) || !strings.Contains(body, "OAuth bearer authentication failed") {
		t.Fatalf("a bad token: %d %q %s", resp.StatusCode, ch, body)
	}
	mresp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/.well-known/oauth-protected-resource", g.port+1))
	if err != nil {
		t.Fatal(err)
	}
	defer mresp.Body.Close()
	var meta struct {
		AuthorizationServers []string `json:"authorization_servers"`
		Scopes               []string `json:"scopes_supported"`
	}
	json.NewDecoder(mresp.Body).Decode(&meta)
	if len(meta.AuthorizationServers) != 1 || meta.AuthorizationServers[0] != oauthIssuer || len(meta.Scopes) != 2 {
		t.Fatalf("resource metadata: %+v", meta)
	}
}

func TestAnOAuthTokenWithoutTheRulesScopeIsRefused(t *testing.T) {
	g, key := oauthGateway(t) // the rule's scope is "openid pg"
	withScope := func(claims jwt.MapClaims) string {
		tok := jwt.MapClaims{"email": "alice@corp", "scope": nil}
		for c, v := range claims {
			tok[c] = v
		}
		return oauthToken(t, key, tok)
	}
	for name, tok := range map[string]string{
		"no scope claim":       withScope(nil),
		"only openid":          withScope(jwt.MapClaims{"scope": "openid profile"}),
		"a longer scope name":  withScope(jwt.MapClaims{"scope": "openid pgadmin"}),
		"the scope in a list":  withScope(jwt.MapClaims{"scope": []string{"openid", "pg"}}), // scope is a string
		"another scp":          withScope(jwt.MapClaims{"scp": []string{"openid", "reports"}}),
		"pg as part of a word": withScope(jwt.MapClaims{"scp": "openid xpg"}),
	} {
		if c, err := connectOAuth(g, "alice", "require", tok); err == nil {
			c.Close(context.Background())
			t.Fatalf("a token with %s logged in under a rule asking for scope pg", name)
		} else if !strings.Contains(err.Error(), "invalid_token") {
			t.Fatalf("%s: %v", name, err)
		}
	}
	g.waitLog(`the token's scope lacks \"pg\", which the rule asks for`, 6)
	// Okta's and Entra ID's scp, as a list or a string, and without
	// OpenID Connect's own scopes, which need not be in an access token.
	for _, scp := range []any{[]string{"pg"}, "pg"} {
		c, err := connectOAuth(g, "alice", "require", withScope(jwt.MapClaims{"scp": scp}))
		if err != nil {
			t.Fatalf("scp %v: %v", scp, err)
		}
		c.Close(context.Background())
	}
	// Over HTTP a genuine token without the scope is RFC 6750's
	// insufficient_scope: 403, with the scope to ask for.
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, _ := http.NewRequest("POST", fmt.Sprintf("https://127.0.0.1:%d/_sql?db=postgres", g.port+1), strings.NewReader(`{"stmt":"SELECT 1"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+withScope(jwt.MapClaims{"scope": "openid"}))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ch := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != 403 || !strings.HasPrefix(ch, `Bearer error="insufficient_scope"`) || !strings.Contains(ch, `scope="openid pg"`) ||
		!strings.Contains(string(b), `"28000"`) || !strings.Contains(string(b), `the token lacks a scope this request's rule asks for`) {
		t.Fatalf("HTTP: %d %q %s", resp.StatusCode, ch, b)
	}
	// pgwarden explain says the rule refuses the token, and why.
	out, stderr, code := runCLI(t, "", "explain", "-c", g.configPath(), "--user", "alice", "--database", "postgres",
		"--address", "127.0.0.1", "--ssl", "--token", withScope(jwt.MapClaims{"scope": "openid"}))
	if code != 0 || !strings.Contains(out, `token: refused by rule 1: bad token: the token's scope lacks "pg"`) {
		t.Fatalf("explain: %s %s", out, stderr)
	}
}

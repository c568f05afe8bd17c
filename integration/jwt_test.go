package integration

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwksServer is a test identity provider's key endpoint.
type jwksServer struct {
	mu       sync.Mutex
	keys     []map[string]any
	down     bool
	hang     chan struct{} // set: requests wait for it to close
	fetches  int
	inFlight int
	srv      *httptest.Server
}

func newJWKS(t *testing.T) *jwksServer {
	j := &jwksServer{}
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.mu.Lock()
		j.fetches++
		j.inFlight++
		hang := j.hang
		j.mu.Unlock()
		if hang != nil {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}
		j.mu.Lock()
		defer j.mu.Unlock()
		j.inFlight--
		if j.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"keys": j.keys})
	}))
	t.Cleanup(j.srv.Close)
	return j
}

func (j *jwksServer) set(keys ...map[string]any) {
	j.mu.Lock()
	j.keys = keys
	j.mu.Unlock()
}

// pending is the number of key set requests not answered yet.
func (j *jwksServer) pending() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.inFlight
}

// setHang makes requests wait (an endpoint that accepts and never
// answers) until it is called with false.
func (j *jwksServer) setHang(h bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	switch {
	case h && j.hang == nil:
		j.hang = make(chan struct{})
	case !h && j.hang != nil:
		close(j.hang)
		j.hang = nil
	}
}

func (j *jwksServer) setDown(d bool) {
	j.mu.Lock()
	j.down = d
	j.mu.Unlock()
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

type testKey struct {
	kid, alg string
	priv     crypto.Signer
	method   jwt.SigningMethod
}

func (k *testKey) jwk() map[string]any {
	m := map[string]any{"kid": k.kid, "alg": k.alg, "use": "sig"}
	switch pub := k.priv.Public().(type) {
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", b64u(pub.N.Bytes()), b64u(big.NewInt(int64(pub.E)).Bytes())
	case *ecdsa.PublicKey:
		m["kty"], m["crv"] = "EC", "P-256"
		m["x"], m["y"] = b64u(pub.X.FillBytes(make([]byte, 32))), b64u(pub.Y.FillBytes(make([]byte, 32)))
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64u(pub)
	}
	return m
}

func (k *testKey) sign(t *testing.T, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(k.method, claims)
	tok.Header["kid"] = k.kid
	for h, v := range header {
		tok.Header[h] = v
	}
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	noteSecret(s)
	return s
}

func newKeys(t *testing.T) (*testKey, *testKey, *testKey) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edk, _ := ed25519.GenerateKey(rand.Reader)
	return &testKey{"rsa-1", "RS256", rk, jwt.SigningMethodRS256},
		&testKey{"ec-1", "ES256", ek, jwt.SigningMethodES256},
		&testKey{"ed-1", "EdDSA", edk, jwt.SigningMethodEdDSA}
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func TestOwnTokensOverHTTPAndTheWire(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true}, `
[tokens]

[[hba]]
user = "alice"
method = "jwt"

[[hba]]
method = "password"
`, []testUser{{name: "alice", password: "alice-Pass-1"}, {name: "bob", password: "bob-Pass-2"}})
	// A lifetime of zero is refused, as /_token and CREATE TOKEN refuse
	// it: the CLI issued a token of the default lifetime (90 days) for it.
	for _, e := range []string{"0", "0s", "0d"} {
		out, errOut, code := runCLI(t, "", "token", "create", "-c", g.configPath(), "--user", "alice", "--expire", e)
		if code != 2 || out != "" || !strings.Contains(errOut, "is not a lifetime") {
			t.Fatalf("token create --expire %s: exit %d, %q %q", e, code, out, errOut)
		}
	}
	out, errOut, code := runCLI(t, "", "token", "create", "-c", g.configPath(), "--user", "alice", "--expire", "1d")
	if code != 0 {
		t.Fatalf("token create: %s", errOut)
	}
	tok := strings.TrimSpace(out)
	noteSecret(tok)
	g.signal(syscall.SIGHUP) // the new secret was written to the users file
	g.waitLog(`"msg":"reloaded"`, 1)
	status, _, res := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT current_user"}`, bearer(tok))
	if status != 200 || jsonText(t, res["rows"]) != `[["alice"]]` {
		t.Fatalf("own token over HTTP: %d %v", status, res)
	}
	c := g.mustConnect("alice", tok, "postgres")
	if got := queryOne(t, c, "SELECT current_user"); got != "alice" {
		t.Fatal(got)
	}
	// The token is alice's: it does not let bob in, even as his password.
	_, err := g.connect("alice", "not-a-token", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "alice"`)
	// A new secret ends every token signed with the old one.
	g.reloadAfter(func() {
		g.writeUsers([]testUser{{name: "alice", password: "alice-Pass-1", extra: `secret = "` + strings.Repeat("QkNE", 11) + `"` + "\n"}})
	})
	status, hdr, _ := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, bearer(tok))
	if status != 401 || hdr.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
		t.Fatalf("token after a secret change: %d %v", status, hdr)
	}
}

// TestATokenEndsWhenItsPasswordIsChangedByHand: a token from /_token is
// a password proof handed on. Someone who learned alice's password could
// mint one that lives up to tokens.max_ttl; an administrator who then
// changes the password by editing the users file (or through
// configuration management) keeps alice's secret, and before December 2026
// the token, signed with that secret alone, kept working for its whole
// life while the old password itself was refused.
func TestATokenEndsWhenItsPasswordIsChangedByHand(t *testing.T) {
	secret := `secret = "` + strings.Repeat("S0VZ", 11) + `"` + "\n"
	g := startGatewayWith(t, gwOptions{http: true}, `
[tokens]

[[hba]]
user = "alice"
protocol = "pg"
method = "jwt"

[[hba]]
method = "password"
`, []testUser{{name: "alice", password: "alice-Pass-1", extra: secret}})
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_token", "", basic("alice", "alice-Pass-1"))
	if status != 200 || out["token"] == nil {
		t.Fatalf("/_token: %d %v", status, out)
	}
	tok := out["token"].(string)
	noteSecret(tok)
	query := func(tok string) int {
		status, _, _ := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, bearer(tok))
		return status
	}
	if s := query(tok); s != 200 {
		t.Fatalf("the token before the change: %d", s)
	}
	c := g.mustConnect("alice", tok, "postgres")
	c.Close(context.Background())

	// The same entry written again (the same hash): the token lives on.
	g.reloadAfter(func() { g.writeUsers([]testUser{{name: "alice", password: "alice-Pass-1", extra: secret}}) })
	if s := query(tok); s != 200 {
		t.Fatalf("the token after a reload that changed nothing: %d", s)
	}
	// A new password by hand, the secret kept.
	g.reloadAfter(func() { g.writeUsers([]testUser{{name: "alice", password: "alice-Pass-2", extra: secret}}) })
	status, hdr, _ := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, bearer(tok))
	if status != 401 || hdr.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
		t.Fatalf("the token after its password was changed by hand: %d %v", status, hdr)
	}
	_, err := g.connect("alice", tok, "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "alice"`)
	g.waitLog("the user's password was changed since the token was issued", 1)
	// The new password mints tokens that work.
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_token", "", basic("alice", "alice-Pass-2"))
	if status != 200 || out["token"] == nil {
		t.Fatalf("/_token with the new password: %d %v", status, out)
	}
	noteSecret(out["token"].(string))
	if s := query(out["token"].(string)); s != 200 {
		t.Fatalf("a token of the new password: %d", s)
	}
}

func TestExternalIssuerTokensAndEveryRefusal(t *testing.T) {
	jwks := newJWKS(t)
	rsaKey, ecKey, edKey := newKeys(t)
	jwks.set(rsaKey.jwk(), ecKey.jwk(), edKey.jwk())
	iss := "https://idp.test/"
	g := startGatewayWith(t, gwOptions{http: true}, fmt.Sprintf(`
[tokens]

[[jwt_issuers]]
issuer = %q
jwks_url = %q
audience = "pgwarden"
algorithms = ["RS256", "ES256", "EdDSA"]
refresh = "1s"

[[hba]]
protocol = "http"
method = "jwt"
`, iss, jwks.srv.URL), []testUser{
		{name: "alice", extra: fmt.Sprintf("secret = %q\n[user.jwt]\niss = %q\nusername = \"alice@corp\"\n", strings.Repeat("QUJD", 11), iss)},
	})
	url := g.httpURL() + "/_sql?db=postgres"
	sql := `{"stmt":"SELECT current_user"}`
	now := time.Now()
	good := jwt.MapClaims{"iss": iss, "aud": "pgwarden", "username": "alice@corp", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
	for _, k := range []*testKey{rsaKey, ecKey, edKey} {
		status, _, out := httpDo(t, "POST", url, sql, bearer(k.sign(t, good, nil)))
		if status != 200 || jsonText(t, out["rows"]) != `[["alice"]]` {
			t.Fatalf("%s: %d %v", k.alg, status, out)
		}
	}
	with := func(change func(c jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{}
		for k, v := range good {
			c[k] = v
		}
		change(c)
		return c
	}
	ownSecret, _ := base64.StdEncoding.DecodeString(strings.Repeat("QUJD", 11))
	hsExternal, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, good).SignedString(ownSecret)
	rsOwn := rsaKey.sign(t, jwt.MapClaims{"iss": "pgwarden", "sub": "alice", "exp": now.Add(time.Hour).Unix()}, nil)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, good).SignedString(jwt.UnsafeAllowNoneSignatureType)
	refused := map[string]string{
		"alg none":                           none,
		"HS256 claiming the external issuer": hsExternal,
		"RS256 claiming pgwarden's issuer":   rsOwn,
		"expired beyond leeway":              rsaKey.sign(t, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-2 * time.Minute).Unix() }), nil),
		"not yet valid beyond leeway":        rsaKey.sign(t, with(func(c jwt.MapClaims) { c["nbf"] = now.Add(5 * time.Minute).Unix() }), nil),
		"no exp":                             rsaKey.sign(t, with(func(c jwt.MapClaims) { delete(c, "exp") }), nil),
		"wrong audience":                     rsaKey.sign(t, with(func(c jwt.MapClaims) { c["aud"] = "someone-else" }), nil),
		"unknown username":                   rsaKey.sign(t, with(func(c jwt.MapClaims) { c["username"] = "mallory@corp" }), nil),
		"jku header":                         rsaKey.sign(t, good, map[string]any{"jku": "https://evil.test/keys"}),
		"x5u header":                         rsaKey.sign(t, good, map[string]any{"x5u": "https://evil.test/cert"}),
		"crit header":                        rsaKey.sign(t, good, map[string]any{"crit": []string{"exp-ext"}, "exp-ext": 1}),
		"unknown kid":                        (&testKey{"other", "RS256", rsaKey.priv, jwt.SigningMethodRS256}).sign(t, good, nil),
		"malformed":                          "not.a.token",
		"a megabyte of dots":                 strings.Repeat(".", 1<<20),
	}
	for name, tok := range refused {
		t.Run(name, func(t *testing.T) {
			status, hdr, _ := httpDo(t, "POST", url, sql, bearer(tok))
			if status == 200 || (status != 401 && status != 431 && status != 400) {
				t.Fatalf("%s: status %d", name, status)
			}
			if status == 401 && hdr.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
				t.Fatalf("%s: WWW-Authenticate %q", name, hdr.Get("WWW-Authenticate"))
			}
		})
	}
	// Within the 60 s leeway, a just-expired token still works.
	status, _, _ := httpDo(t, "POST", url, sql, bearer(rsaKey.sign(t, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-20 * time.Second).Unix() }), nil)))
	if status != 200 {
		t.Fatalf("token within leeway: %d", status)
	}

	// Key rotation: a new key appears in the JWKS and is picked up.
	rsa2, _ := rsa.GenerateKey(rand.Reader, 2048)
	newKey := &testKey{"rsa-2", "RS256", rsa2, jwt.SigningMethodRS256}
	jwks.set(newKey.jwk(), ecKey.jwk())
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, _, _ := httpDo(t, "POST", url, sql, bearer(newKey.sign(t, good, nil)))
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated key never accepted (%d)", status)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// The JWKS endpoint goes down: the last good keys stay in use.
	jwks.setDown(true)
	time.Sleep(2500 * time.Millisecond)
	status, _, _ = httpDo(t, "POST", url, sql, bearer(ecKey.sign(t, good, nil)))
	if status != 200 {
		t.Fatalf("with the JWKS down, last good keys should serve: %d", status)
	}
}

// With username_claim = "email", a token whose issuer says the address is
// not verified (email_verified false) names no one: before, anyone who
// could set an address at the identity provider (many let people edit
// theirs) logged in as the user bound to it, the "nOAuth" takeover. A
// verified address, or a token without the claim, is taken as before;
// so is a role taken from role_claim.
// A reload never waits for an identity provider, and never loses the keys
// it has: it fetches the key sets again in the background and puts the new
// keys in force only once they arrived. Before, every load fetched every
// set and waited, within a 10 s timeout: a provider that accepted and never
// answered held each reload (a revoked password with it) for those 10 s,
// and a provider that was down at a reload left the new state without
// keys, so tokens that had verified were refused until the next refresh.
// A key the provider removed is still dropped by a reload.
func TestAReloadKeepsTheIdentityProvidersKeysAndNeverWaitsForIt(t *testing.T) {
	jwks := newJWKS(t)
	rsaKey, ecKey, _ := newKeys(t)
	jwks.set(rsaKey.jwk(), ecKey.jwk())
	iss := "https://idp.test/"
	extra := fmt.Sprintf(`
[[jwt_issuers]]
issuer = %q
jwks_url = %q
audience = "pgwarden"
algorithms = ["RS256", "ES256"]
refresh = "1h"

[[hba]]
protocol = "http"
method = "jwt"

[[hba]]
method = "scram-sha-256"
`, iss, jwks.srv.URL)
	alice := testUser{name: "alice", extra: fmt.Sprintf("[user.jwt]\niss = %q\nusername = \"alice@corp\"\n", iss)}
	g := startGatewayWith(t, gwOptions{http: true}, extra, []testUser{alice, {name: "bob", password: "bob-Pass-2"}})
	url := g.httpURL() + "/_sql?db=postgres"
	sql := `{"stmt":"SELECT current_user"}`
	now := time.Now()
	claims := jwt.MapClaims{"iss": iss, "aud": "pgwarden", "username": "alice@corp", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
	rsaTok, ecTok := rsaKey.sign(t, claims, nil), ecKey.sign(t, claims, nil)
	verifies := func(tok string) bool {
		status, _, _ := httpDo(t, "POST", url, sql, bearer(tok))
		return status == 200
	}
	if !verifies(rsaTok) || !verifies(ecTok) {
		t.Fatal("tokens refused before any reload")
	}
	g.mustConnect("bob", "bob-Pass-2", "postgres").Close(context.Background())

	// The provider accepts and never answers; bob's entry is removed and
	// pgwarden reloads: the reload is done, and bob refused, while the
	// provider still holds the fetch.
	jwks.setHang(true)
	defer jwks.setHang(false)
	g.reloadAfter(func() { g.replaceUsersFile([]testUser{alice}) })
	if jwks.pending() == 0 {
		t.Fatal("no fetch under way once the reload was done: it waited for the provider, or fetched nothing")
	}
	if _, err := g.connect("bob", "bob-Pass-2", "postgres"); err == nil {
		t.Fatal("bob's password still works after the reload")
	}
	if !verifies(rsaTok) {
		t.Fatal("a token refused while the provider hangs")
	}
	jwks.setHang(false)

	// The provider is down at a reload: the keys in force stay, and the
	// failed fetch is a line of pgwarden's own log (it was a plain-text line
	// of the standard library's logger among the JSON ones).
	jwks.setDown(true)
	g.reloadAfter(func() {})
	g.waitLog(`"msg":"an identity provider's key set could not be fetched; the last keys fetched stay in use","jwks_url":"`+jwks.srv.URL, 1)
	if !verifies(rsaTok) {
		t.Fatal("a token refused after a reload with the provider down")
	}
	for _, line := range strings.Split(g.log.String(), "\n") {
		if strings.Contains(line, "key set") && !strings.HasPrefix(line, "{") {
			t.Fatalf("a log line that is not JSON: %s", line)
		}
	}

	// The provider drops the RSA key (rotated out after a leak, say): a
	// reload puts the new set in force once it arrived.
	jwks.set(ecKey.jwk())
	jwks.setDown(false)
	g.reloadAfter(func() {})
	waitFor(t, 10*time.Second, "the removed key refused after a reload", func() bool { return !verifies(rsaTok) })
	if !verifies(ecTok) {
		t.Fatal("the key still published was dropped")
	}
}

func TestAnUnverifiedEmailNamesNoOne(t *testing.T) {
	jwks := newJWKS(t)
	rsaKey, _, _ := newKeys(t)
	jwks.set(rsaKey.jwk())
	iss := "https://idp.test/"
	g := startGatewayWith(t, gwOptions{http: true}, fmt.Sprintf(`
[[jwt_issuers]]
issuer = %q
jwks_url = %q
audience = "pgwarden"
username_claim = "email"
algorithms = ["RS256"]
role_claim = "pg_role"
roles_allowed = ["bob"]

[[hba]]
protocol = "http"
method = "jwt"
`, iss, jwks.srv.URL), []testUser{
		{name: "alice", extra: fmt.Sprintf("[user.jwt]\niss = %q\nusername = \"alice@corp\"\n", iss)},
	})
	url := g.httpURL() + "/_sql?db=postgres"
	sql := `{"stmt":"SELECT current_user"}`
	now := time.Now()
	token := func(email string, verified any, role string) string {
		c := jwt.MapClaims{"iss": iss, "aud": "pgwarden", "email": email, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
		if verified != nil {
			c["email_verified"] = verified
		}
		if role != "" {
			c["pg_role"] = role
		}
		return rsaKey.sign(t, c, nil)
	}
	for _, tc := range []struct {
		name, tok string
		status    int
		user      string
	}{
		{"verified", token("alice@corp", true, ""), 200, "alice"},
		{"no email_verified claim", token("alice@corp", nil, ""), 200, "alice"},
		{"not verified", token("alice@corp", false, ""), 401, ""},
		{"verified as a string", token("alice@corp", "true", ""), 401, ""},
		{"a role claim, verified", token("bea@corp", true, "bob"), 200, "bob"},
		{"a role claim, not verified", token("bea@corp", false, "bob"), 401, ""},
	} {
		status, _, out := httpDo(t, "POST", url, sql, bearer(tc.tok))
		if status != tc.status || (tc.user != "" && jsonText(t, out["rows"]) != `[["`+tc.user+`"]]`) {
			t.Errorf("%s: %d %s", tc.name, status, jsonText(t, out))
		}
	}
	g.waitLog("email_verified is not true", 1)
}

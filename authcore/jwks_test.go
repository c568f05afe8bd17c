package authcore

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgwarden/pgwarden/config"
)

// A key set is fetched, and waited for, when a load first names it. Later
// loads use it at once and fetch it again in the background, which puts
// new keys in force only when the fetch succeeded. A set the configuration
// in force no longer names is let go.
func TestKeySetsAreKeptAcrossLoadsAndRefetchedInTheBackground(t *testing.T) {
	var fetches atomic.Int32
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"keys":[]}`))
	}))
	defer srv.Close()
	cfg := config.Default()
	cfg.JWTIssuers = []config.JWTIssuer{{Issuer: "https://idp.test/", JWKSURL: srv.URL, Audience: "pgwarden", Algorithms: []string{"RS256"},
		Refresh: config.Duration{Duration: time.Hour}}}
	users, err := NewUsers(nil)
	if err != nil {
		t.Fatal(err)
	}
	j := NewJWKS(srv.Client())
	settled := func() {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); j.Refetching(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("a background fetch never ended")
			}
		}
	}
	load := func() *Tokens {
		t.Helper()
		toks, err := NewTokens(cfg, users, j)
		if err != nil {
			t.Fatal(err)
		}
		return toks
	}
	first := load()
	if n := fetches.Load(); n != 1 || j.Len() != 1 {
		t.Fatalf("first load: %d fetches, %d sets", n, j.Len())
	}
	inForce := func() any { return first.external["https://idp.test/"].set.kf.Load() }
	keys := inForce()
	load()
	settled()
	if n := fetches.Load(); n != 2 || j.Len() != 1 {
		t.Fatalf("second load: %d fetches, %d sets", n, j.Len())
	}
	if inForce() == keys {
		t.Fatal("the keys fetched in the background were not put in force")
	}
	// The provider is down: the keys in force stay.
	down.Store(true)
	keys = inForce()
	load()
	settled()
	if n := fetches.Load(); n != 3 || inForce() != keys {
		t.Fatalf("with the provider down: %d fetches, keys replaced %v", n, inForce() != keys)
	}
	down.Store(false)
	j.Keep(cfg)
	if j.Len() != 1 {
		t.Fatal("a set in use was let go")
	}
	// Another refresh interval is another set, fetched and waited for.
	cfg.JWTIssuers[0].Refresh.Duration = 2 * time.Hour
	load()
	j.Keep(cfg)
	if n := fetches.Load(); n != 4 || j.Len() != 1 {
		t.Fatalf("after the change: %d fetches, %d sets kept", n, j.Len())
	}
	j.Keep(config.Default())
	if j.Len() != 0 {
		t.Fatal("a set no configuration names was kept")
	}
	if _, err := NewTokens(cfg, users, nil); err == nil {
		t.Fatal("issuers without a key set store")
	}
}

// A token verified with an issuer's keys is remembered (a minute at most),
// but not past the keys: once a reload's fetch put a set without its key in
// force, the token is checked again and refused. Before, the remembered
// verification outlived a key the provider had removed.
func TestARememberedTokenIsCheckedAgainstNewKeys(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwk := fmt.Sprintf(`{"kty":"RSA","kid":"k1","alg":"RS256","use":"sig","n":%q,"e":%q}`,
		base64.RawURLEncoding.EncodeToString(priv.N.Bytes()), base64.RawURLEncoding.EncodeToString(big.NewInt(int64(priv.E)).Bytes()))
	var withKey atomic.Bool
	withKey.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if withKey.Load() {
			fmt.Fprintf(w, `{"keys":[%s]}`, jwk)
			return
		}
		w.Write([]byte(`{"keys":[]}`))
	}))
	defer srv.Close()
	iss := "https://idp.test/"
	cfg, users, j, toks := aliceOfIssuer(t, iss, srv, "RS256")
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": iss, "aud": "pgwarden", "username": "alice@corp",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()})
	tok.Header["kid"] = "k1"
	raw, err := tok.SignedString(priv)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if u, err := toks.Verify(ctx, raw); err != nil || u.Name != "alice" {
		t.Fatalf("before: %v, %v", u, err)
	}
	// The provider removes the key; a load fetches the set again in the
	// background.
	withKey.Store(false)
	if _, err := NewTokens(cfg, users, j); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); j.Refetching(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the background fetch never ended")
		}
	}
	if _, err := toks.Verify(ctx, raw); err == nil {
		t.Fatal("a token of a removed key still verifies (remembered)")
	}
}

// A key verifies tokens only as its JWK allows: never a key the identity
// provider marked for encryption ("use": "enc", or "key_ops" without
// "verify"), and never a token of another algorithm than the JWK names,
// with a kid or without one (then every key of the set is tried). Before,
// keyfunc took any key of the set, and for a token without kid ignored the
// JWK's "alg".
func TestOnlyKeysMeantForSignaturesOfTheTokensAlgorithmVerifyIt(t *testing.T) {
	keys := map[string]*rsa.PrivateKey{}
	var jwks []string
	for _, k := range []struct{ kid, extra string }{
		{"sig", `"use":"sig","alg":"RS256"`},
		{"enc", `"use":"enc"`},
		{"ops", `"key_ops":["encrypt"]`},
		{"verify", `"key_ops":["verify"]`},
		{"plain", ``},
		{"ps", `"alg":"PS256"`},
	} {
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		keys[k.kid] = priv
		extra := k.extra
		if extra != "" {
			extra += ","
		}
		jwks = append(jwks, fmt.Sprintf(`{"kty":"RSA","kid":%q,%s"n":%q,"e":%q}`, k.kid, extra,
			base64.RawURLEncoding.EncodeToString(priv.N.Bytes()), base64.RawURLEncoding.EncodeToString(big.NewInt(int64(priv.E)).Bytes())))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"keys":[%s]}`, strings.Join(jwks, ","))
	}))
	defer srv.Close()
	iss := "https://idp.test/"
	_, _, _, toks := aliceOfIssuer(t, iss, srv, "RS256", "PS256")
	for _, c := range []struct {
		signer, kid string // kid "" sends none
		method      jwt.SigningMethod
		ok          bool
	}{
		{"sig", "sig", jwt.SigningMethodRS256, true},
		{"plain", "plain", jwt.SigningMethodRS256, true},
		{"plain", "plain", jwt.SigningMethodPS256, true},
		{"verify", "verify", jwt.SigningMethodRS256, true},
		{"ps", "ps", jwt.SigningMethodPS256, true},
		{"enc", "enc", jwt.SigningMethodRS256, false},
		{"ops", "ops", jwt.SigningMethodRS256, false},
		{"ps", "ps", jwt.SigningMethodRS256, false},
		{"sig", "sig", jwt.SigningMethodPS256, false},
		{"sig", "", jwt.SigningMethodRS256, true},
		{"plain", "", jwt.SigningMethodRS256, true},
		{"ps", "", jwt.SigningMethodPS256, true},
		{"enc", "", jwt.SigningMethodRS256, false},
		{"ops", "", jwt.SigningMethodRS256, false},
		{"ps", "", jwt.SigningMethodRS256, false},
		{"sig", "", jwt.SigningMethodPS256, false},
	} {
		tok := jwt.NewWithClaims(c.method, jwt.MapClaims{"iss": iss, "aud": "pgwarden", "username": "alice@corp",
			"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()})
		if c.kid != "" {
			tok.Header["kid"] = c.kid
		}
		raw, err := tok.SignedString(keys[c.signer])
		if err != nil {
			t.Fatal(err)
		}
		u, err := toks.Verify(context.Background(), raw)
		if c.ok && (err != nil || u.Name != "alice") {
			t.Errorf("key %s, kid %q, %s: refused: %v", c.signer, c.kid, c.method.Alg(), err)
		}
		if !c.ok && err == nil {
			t.Errorf("key %s, kid %q, %s: verified", c.signer, c.kid, c.method.Alg())
		}
	}
}

// aliceOfIssuer configures issuer iss with the key set srv serves and the
// algorithms algs, and alice as its user alice@corp (claim "username"): it
// returns the configuration, the users, the kept key sets (let go when
// the test ends) and the tokens of that load.
func aliceOfIssuer(t *testing.T, iss string, srv *httptest.Server, algs ...string) (*config.Config, *Users, *JWKS, *Tokens) {
	t.Helper()
	cfg := config.Default()
	cfg.JWTIssuers = []config.JWTIssuer{{Issuer: iss, JWKSURL: srv.URL, Audience: "pgwarden", UsernameClaim: "username",
		Algorithms: algs, Refresh: config.Duration{Duration: time.Hour}}}
	users, err := NewUsers([]*User{{Name: "alice", JWT: &UserJWT{Iss: iss, Username: "alice@corp"}}})
	if err != nil {
		t.Fatal(err)
	}
	j := NewJWKS(srv.Client())
	t.Cleanup(func() { j.Keep(config.Default()) })
	toks, err := NewTokens(cfg, users, j)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, users, j, toks
}

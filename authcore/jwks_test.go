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
	cfg := config.Default()
	cfg.JWTIssuers = []config.JWTIssuer{{Issuer: iss, JWKSURL: srv.URL, Audience: "pgwarden", UsernameClaim: "username",
		Algorithms: []string{"RS256"}, Refresh: config.Duration{Duration: time.Hour}}}
	users, err := NewUsers([]*User{{Name: "alice", JWT: &UserJWT{Iss: iss, Username: "alice@corp"}}})
	if err != nil {
		t.Fatal(err)
	}
	j := NewJWKS(srv.Client())
	defer j.Keep(config.Default())
	toks, err := NewTokens(cfg, users, j)
	if err != nil {
		t.Fatal(err)
	}
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

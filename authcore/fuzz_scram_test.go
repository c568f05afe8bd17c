package authcore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/config"
)

// FuzzSCRAMExchange: arbitrary client-first and client-final messages end
// in a protocol violation or a failure, never a panic or a success.
func FuzzSCRAMExchange(f *testing.F) {
	f.Add("n,,n=,r=abc", "c=biws,r=abc,p=AAAA")
	f.Add("p=tls-server-end-point,,n=,r=x", "c=,r=,p=")
	f.Add("y,,n=user,r=\x00", "")
	h, _ := HashPassword(AlgoSCRAM, "fuzz-password")
	us, _ := ParseUsers("u", []byte("[[user]]\nname = \"alice\"\npassword = \""+h+"\"\n"))
	a := NewAuthenticator(us, NewHashLimiter(0))
	f.Fuzz(func(t *testing.T, first, final string) {
		for _, cb := range [][]byte{nil, make([]byte, 32)} {
			for _, mech := range []string{MechSCRAM, MechSCRAMPlus} {
				s, err := a.StartSCRAM(context.Background(), "alice", mech, cb)
				if err != nil {
					continue
				}
				if _, _, err := s.Step([]byte(first)); err != nil {
					continue
				}
				if _, _, err := s.Step([]byte(final)); err == nil {
					t.Fatalf("a made-up proof was accepted: %q %q", first, final)
				}
			}
		}
	})
}

// FuzzBearerToken: any bearer token is refused or names a real user; no
// made-up token verifies, and nothing panics. pgwarden's own issuer and an
// external one with a key set (a key for signatures, one for encryption)
// are both configured, so headers such as kid and alg reach the key
// choice of either.
func FuzzBearerToken(f *testing.F) {
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.x")
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJwZ3dhcmRlbiIsInN1YiI6ImFsaWNlIiwiZXhwIjo5OTk5OTk5OTk5fQ.")
	f.Add("a.b.c.d")
	f.Add("....")
	b64 := base64.RawURLEncoding.EncodeToString
	for _, h := range []string{`{"alg":"ES256","kid":"sig"}`, `{"alg":"ES256","kid":"enc"}`, `{"alg":"ES256"}`, `{"alg":"ES256","kid":7}`, `{"alg":"RS256","kid":"sig"}`} {
		f.Add(b64([]byte(h)) + "." + b64([]byte(`{"iss":"https://idp.test/","aud":"pgwarden","sub":"alice","exp":9999999999}`)) + "." + b64(make([]byte, 64)))
	}
	var jwks string
	for _, k := range []struct{ kid, use string }{{"sig", "sig"}, {"enc", "enc"}} {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		pub, _ := priv.PublicKey.Bytes() // 0x04 || X || Y
		if jwks != "" {
			jwks += ","
		}
		jwks += fmt.Sprintf(`{"kty":"EC","crv":"P-256","kid":%q,"use":%q,"x":%q,"y":%q}`, k.kid, k.use, b64(pub[1:33]), b64(pub[33:]))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"keys":[%s]}`, jwks)
	}))
	f.Cleanup(srv.Close)
	cfg := config.Default()
	cfg.TokensSet = true
	cfg.JWTIssuers = []config.JWTIssuer{{Issuer: "https://idp.test/", JWKSURL: srv.URL, Audience: "pgwarden", UsernameClaim: "sub",
		Algorithms: []string{"ES256", "RS256"}, Refresh: config.Duration{Duration: time.Hour}}}
	us, _ := ParseUsers("u", []byte("[[user]]\nname = \"alice\"\nsecret = \"QUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJD\"\n[user.jwt]\niss = \"https://idp.test/\"\nusername = \"alice\"\n"))
	j := NewJWKS(srv.Client())
	f.Cleanup(func() { j.Keep(config.Default()) })
	toks, err := NewTokens(cfg, us, j)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		toks.ClaimedUser(tok)
		if _, err := toks.Verify(context.Background(), tok); err == nil {
			t.Fatalf("a made-up token verified: %q", tok)
		}
	})
}

package authcore

import (
	"context"
	"testing"

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
// made-up token verifies, and nothing panics.
func FuzzBearerToken(f *testing.F) {
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.x")
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJwZ3dhcmRlbiIsInN1YiI6ImFsaWNlIiwiZXhwIjo5OTk5OTk5OTk5fQ.")
	f.Add("a.b.c.d")
	f.Add("....")
	cfg := config.Default()
	cfg.TokensSet = true
	us, _ := ParseUsers("u", []byte("[[user]]\nname = \"alice\"\nsecret = \"QUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJD\"\n"))
	toks, err := NewTokens(cfg, us, nil)
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

package authcore

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgwarden/pgwarden/config"
)

// A token pgwarden issues is a password proof handed on, so it ends with
// the password however the password changes: a hash replaced by hand (or
// by configuration management, or store import) keeps the user's secret,
// which alone signed tokens before December 2026.
func TestATokenEndsWithThePasswordItWasIssuedUnder(t *testing.T) {
	secret := NewSecret()
	oldHash, newHash := mustHash(t, "old-Pass-1"), mustHash(t, "new-Pass-2")
	users := func(password string) *Users {
		entry := "[[user]]\nname = \"alice\"\nsecret = \"" + secret + "\"\n"
		if password != "" {
			entry += "password = \"" + password + "\"\n"
		}
		return mustUsers(t, entry)
	}
	cfg := config.Default()
	verify := func(us *Users, tok string) error {
		toks, err := NewTokens(cfg, us, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = toks.VerifyOwn(context.Background(), tok)
		return err
	}
	before := users(oldHash)
	tok, _, err := IssueToken(cfg.Tokens, before.Lookup("alice"), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Nothing of the hash can be read from the token without the secret.
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
		t.Fatal(err)
	}
	if b, _ := claims[claimPasswordBinding].(string); b == "" || strings.Contains(oldHash, b) {
		t.Fatalf("claim %s = %q", claimPasswordBinding, b)
	}

	if err := verify(users(oldHash), tok); err != nil {
		t.Fatalf("the same password, loaded again: %v", err)
	}
	for name, tc := range map[string]struct {
		password, reason string
	}{
		"changed by hand": {newHash, "the user's password was changed since the token was issued"},
		"removed by hand": {"", "the user's password was removed since the token was issued"},
	} {
		err := verify(users(tc.password), tok)
		if err == nil || !strings.Contains(ReasonOf(err), tc.reason) || !strings.HasPrefix(ReasonOf(err), string(ReasonBadToken)) {
			t.Errorf("%s: %v, want the bad-token reason %q", name, err, tc.reason)
		}
	}

	// A token of a user who had no password carries no binding: setting
	// a first password revokes nothing, as for sessions (Revoked).
	none := users("")
	tokNone, _, err := IssueToken(cfg.Tokens, none.Lookup("alice"), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(users(newHash), tokNone); err != nil {
		t.Fatalf("a token issued without a password, after a first password: %v", err)
	}

	// Tokens issued before December 2026 carry no binding and verify as
	// before (a new secret ends them); a binding that is not a string is
	// refused.
	key, _ := secretKey(secret)
	sign := func(extra jwt.MapClaims) string {
		c := jwt.MapClaims{"iss": cfg.Tokens.Issuer, "sub": "alice", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
		for k, v := range extra {
			c[k] = v
		}
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if err := verify(users(newHash), sign(nil)); err != nil {
		t.Fatalf("a token without the binding: %v", err)
	}
	if err := verify(users(oldHash), sign(jwt.MapClaims{claimPasswordBinding: 42})); err == nil {
		t.Fatal("a binding that is not a string verified")
	}
	// The binding is keyed by the secret: the same hash under another
	// user's secret binds differently.
	other, _ := secretKey(NewSecret())
	if passwordBinding(key, oldHash) == passwordBinding(other, oldHash) {
		t.Fatal("the binding does not depend on the secret")
	}
}

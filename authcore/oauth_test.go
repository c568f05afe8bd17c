package authcore

import (
	"errors"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgwarden/pgwarden/config"
)

func TestTheOAuthBearerInitialResponseIsReadAsPostgreSQLReadsIt(t *testing.T) {
	ok := map[string]string{
		"n,,\x01auth=Bearer abc.def-ghi\x01\x01":                  "abc.def-ghi",
		"y,,\x01auth=Bearer abc==\x01\x01":                        "abc==",
		"n,,\x01auth=bearer  tok\x01host=db\x01port=5432\x01\x01": "tok",
		"n,,\x01auth=\x01\x01":                                    "", // discovery
	}
	for in, want := range ok {
		got, err := ParseOAuthBearer([]byte(in))
		if err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "n", "n,", "n,,", "n,,\x01", "p=tls-server-end-point,,\x01auth=Bearer a\x01\x01",
		"n,a=alice,\x01auth=Bearer a\x01\x01", "x,,\x01auth=Bearer a\x01\x01", "n,,auth=Bearer a\x01\x01",
		"n,,\x01auth=Bearer a\x01", "n,,\x01auth=Bearer a\x01\x01extra", "n,,\x01host=db\x01\x01",
		"n,,\x01auth=Bearer a\x01auth=Bearer b\x01\x01", "n,,\x01auth=Basic a\x01\x01", "n,,\x01auth=Bearer \x01\x01",
		"n,,\x01auth=Bearer a b\x01\x01", "n,,\x01au th=x\x01auth=Bearer a\x01\x01", "n,,\x01=x\x01\x01",
		"n,,\x01auth=Bearer a\x00\x01\x01", "n,,\x01auth=Bearer a=b\x01\x01",
	} {
		if _, err := ParseOAuthBearer([]byte(in)); !errors.Is(err, ErrSASLProtocol) {
			t.Errorf("%q was accepted (%v)", in, err)
		}
	}
}

func TestTheDiscoveryDocumentIsPostgreSQL18s(t *testing.T) {
	for issuer, want := range map[string]string{
		"https://idp.example.com":  `{"status":"invalid_token","openid-configuration":"https://idp.example.com/.well-known/openid-configuration","scope":"openid pg"}`,
		"https://idp.example.com/": `{"status":"invalid_token","openid-configuration":"https://idp.example.com/.well-known/openid-configuration","scope":"openid pg"}`,
		"https://idp.example.com/.well-known/oauth-authorization-server": `{"status":"invalid_token","openid-configuration":"https://idp.example.com/.well-known/oauth-authorization-server","scope":"openid pg"}`,
	} {
		if got := string(OAuthDiscovery(issuer, "openid pg")); got != want {
			t.Errorf("%s:\n got %s\nwant %s", issuer, got, want)
		}
	}
	if got := string(OAuthDiscovery("https://idp.example.com", "")); got != `{"status":"invalid_token","openid-configuration":"https://idp.example.com/.well-known/openid-configuration"}` {
		t.Errorf("without a scope: %s", got)
	}
}

func TestARoleClaimMapsAPersonWithoutAnEntryToAnAllowedRole(t *testing.T) {
	iss := config.JWTIssuer{Issuer: "https://idp", UsernameClaim: "email", RoleClaim: "pg_role", RolesAllowed: []string{"analyst", "app_rw"}}
	u, err := roleFromClaim(iss, jwt.MapClaims{"email": "ann@corp", "pg_role": "analyst"})
	if err != nil || u.Name != "ann@corp" || u.BackendRole() != "analyst" {
		t.Fatalf("allowed: %+v %v", u, err)
	}
	for _, c := range []jwt.MapClaims{
		{"email": "ann@corp", "pg_role": "postgres"},       // not allowed
		{"email": "ann@corp"},                              // claim missing
		{"email": "ann@corp", "pg_role": []any{"analyst"}}, // wrong type
		{"email": "ann@corp", "pg_role": ""},               // empty
		{"pg_role": "analyst"},                             // no username
	} {
		if _, err := roleFromClaim(iss, c); !errors.Is(err, ErrPasswordFailed) {
			t.Errorf("%v was mapped (%v)", c, err)
		}
	}
	iss.RoleClaim = ""
	if _, err := roleFromClaim(iss, jwt.MapClaims{"email": "ann@corp", "pg_role": "analyst"}); err == nil {
		t.Fatal("without role_claim a token without an entry got in")
	}
}

// FuzzOAuthBearer feeds arbitrary bytes to the OAUTHBEARER parser: it
// never panics, and what it accepts is a b64token or the discovery empty.
func FuzzOAuthBearer(f *testing.F) {
	f.Add([]byte("n,,\x01auth=Bearer abc.def-ghi\x01\x01"))
	f.Add([]byte("n,,\x01auth=\x01\x01"))
	f.Add([]byte("y,,\x01auth=Bearer a==\x01host=x\x01\x01"))
	f.Add([]byte("p=x,,\x01auth=Bearer a\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := ParseOAuthBearer(b)
		if err == nil && tok != "" && !isB64Token(tok) {
			t.Fatalf("accepted %q", tok)
		}
	})
}

func TestATokenCarriesEveryScopeOfTheRule(t *testing.T) {
	for _, c := range []struct {
		rule   string
		claims jwt.MapClaims
		miss   string
	}{
		{"openid pg", jwt.MapClaims{"scope": "openid pg"}, ""},
		{"openid pg", jwt.MapClaims{"scope": "pg"}, ""}, // OpenID Connect's own scopes are not asked of an access token
		{"openid pg", jwt.MapClaims{"scope": "openid"}, "pg"},
		{"openid pg", jwt.MapClaims{}, "pg"},
		{"pg reports", jwt.MapClaims{"scope": "pg"}, "reports"},
		{"pg reports", jwt.MapClaims{"scope": "reports", "scp": []any{"pg"}}, ""},
		{"pg", jwt.MapClaims{"scope": []any{"pg"}}, "pg"}, // scope is a string by RFC 8693
		{"pg", jwt.MapClaims{"scope": "pgx"}, "pg"},
		{"pg", jwt.MapClaims{"scope": "x/pg"}, "pg"},
		// Entra ID writes the bare name of a resource URI's scope.
		{"api://pgwarden/pg.login", jwt.MapClaims{"scp": "pg.login"}, ""},
		{"api://pgwarden/pg.login", jwt.MapClaims{"scp": "login"}, "api://pgwarden/pg.login"},
		{"api://pgwarden/pg.login", jwt.MapClaims{"scp": []any{""}}, "api://pgwarden/pg.login"},
		{"", jwt.MapClaims{}, ""},
		{"openid profile", jwt.MapClaims{}, ""},
	} {
		if got := missingScope(c.rule, c.claims); got != c.miss {
			t.Errorf("rule %q, claims %v: missing %q, want %q", c.rule, c.claims, got, c.miss)
		}
	}
}

package authcore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// MechOAuthBearer is the SASL mechanism of PostgreSQL 18's oauth method
// (RFC 7628).
const MechOAuthBearer = "OAUTHBEARER"

// kvsep separates the key/value pairs of an OAUTHBEARER message.
const kvsep = 0x01

// ParseOAuthBearer reads a client's OAUTHBEARER initial response as
// PostgreSQL 18 does (src/backend/libpq/auth-oauth.c): a GS2 header "n,,"
// or "y,," (channel binding, "p=...", and an authorization identity are
// refused), then key=value pairs separated by 0x01 and ended by an empty
// one, of which "auth" is required, once. It returns the token of
// "auth=Bearer <token>"; an empty token ("auth=" alone, libpq's first step
// to learn the issuer) returns "" and no error. Anything malformed is an
// error satisfying errors.Is(err, ErrSASLProtocol).
func ParseOAuthBearer(msg []byte) (string, error) {
	bad := func(detail string) error { return saslViolation("malformed OAUTHBEARER message: %s", detail) }
	p := string(msg)
	if p == "" {
		return "", bad("the message is empty")
	}
	switch p[0] {
	case 'p':
		return "", bad("the server does not support channel binding for OAuth, but the client message includes channel binding data")
	case 'y', 'n':
		p = p[1:]
	default:
		return "", bad(fmt.Sprintf("unexpected channel-binding flag %q", p[0]))
	}
	if p == "" || p[0] != ',' {
		return "", bad("comma expected after the channel-binding flag")
	}
	p = p[1:]
	if p != "" && p[0] == 'a' {
		return "", bad("the client uses an authorization identity, which is not supported")
	}
	if p == "" || p[0] != ',' {
		return "", bad("unexpected attribute in the GS2 header")
	}
	p = p[1:]
	if p == "" || p[0] != kvsep {
		return "", bad("key-value separator expected after the GS2 header")
	}
	p = p[1:]
	auth, seen := "", false
	for {
		end := strings.IndexByte(p, kvsep)
		if end < 0 {
			return "", bad("the message does not end with an empty key-value pair")
		}
		pair := p[:end]
		p = p[end+1:]
		if pair == "" {
			break
		}
		key, value, ok := strings.Cut(pair, "=")
		if !ok || key == "" {
			return "", bad("a key-value pair has no key or no '='")
		}
		for i := 0; i < len(key); i++ {
			if c := key[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
				return "", bad("a key holds a character other than a letter")
			}
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; !(c >= 0x21 && c <= 0x7e || c == ' ' || c == '\t' || c == '\r' || c == '\n') {
				return "", bad("a value holds a character that is not printable ASCII")
			}
		}
		if key == "auth" {
			if seen {
				return "", bad("the message contains more than one auth value")
			}
			auth, seen = value, true
		}
	}
	if p != "" {
		return "", bad("the message contains data after the final terminator")
	}
	if !seen {
		return "", bad("the message does not contain an auth value")
	}
	if auth == "" {
		return "", nil // discovery: the client asks where to get a token
	}
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", bad("the auth value is not a Bearer token")
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || !isB64Token(token) {
		return "", bad("the bearer token is not an RFC 6750 b64token")
	}
	return token, nil
}

// isB64Token is RFC 6750's b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" /
// "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// OAuthDiscovery is the JSON a server sends in AuthenticationSASLContinue
// when a token is missing or fails, as PostgreSQL 18 does: where to learn
// about the issuer, and which scope to ask it for.
func OAuthDiscovery(issuer, scope string) []byte {
	doc := struct {
		Status              string `json:"status"`
		OpenIDConfiguration string `json:"openid-configuration"`
		Scope               string `json:"scope,omitempty"`
	}{Status: "invalid_token", OpenIDConfiguration: OpenIDConfigurationURL(issuer), Scope: scope}
	b, _ := json.Marshal(doc)
	return b
}

// OpenIDConfigurationURL is the issuer's discovery document: the issuer
// itself when it names a /.well-known/ document, else the issuer with
// /.well-known/openid-configuration appended (as PostgreSQL 18 derives it).
func OpenIDConfigurationURL(issuer string) string {
	if strings.Contains(issuer, "/.well-known/") {
		return issuer
	}
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}

// runOAuth is method oauth: on the wire SASL OAUTHBEARER, over HTTP a
// bearer token; either way the token must come from the rule's issuer.
func runOAuth(ctx context.Context, st *State, a *Attempt, p Prover, id *Identity) *Refusal {
	rule := id.Rule
	sx := p.SASL()
	if sx == nil {
		if p.Offered() != OfferToken {
			r := refusal(ErrNotOffered, ProofToken)
			r.Issuer, r.Scope = rule.Issuer, rule.Scope
			return r
		}
		tok, err := p.Token(ctx)
		if err != nil {
			return refusal(err, ProofToken)
		}
		u, err := tokenUser(st.Tokens.VerifyFor(ctx, tok, rule.Issuer, rule.Scope))(id.Name)
		if err != nil {
			return &Refusal{Kind: RefusedOAuth, Reason: ReasonOf(err), Issuer: rule.Issuer, Scope: rule.Scope,
				InsufficientScope: insufficientScope(err)}
		}
		id.User = u
		return nil
	}
	mech, data, err := sx.Offer([]string{MechOAuthBearer})
	if err != nil {
		return refusal(err, ProofToken)
	}
	if mech != MechOAuthBearer {
		return refusal(saslViolation("client selected an invalid SASL authentication mechanism"), ProofToken)
	}
	tok, err := ParseOAuthBearer(data)
	if err != nil {
		return refusal(err, ProofToken)
	}
	reason := "oauth discovery: the client sent no token and was told where to get one"
	var u *User
	scopeLacking := false
	if tok != "" {
		u, err = tokenUser(st.Tokens.VerifyFor(ctx, tok, rule.Issuer, rule.Scope))(id.Name)
		if err == nil {
			id.User = u
			return nil
		}
		reason, scopeLacking = ReasonOf(err), insufficientScope(err)
	}
	// RFC 7628 section 3.2.2: the error goes in a challenge, and the
	// client ends the exchange with a lone 0x01.
	in, err := sx.Continue(OAuthDiscovery(rule.Issuer, rule.Scope))
	if err != nil {
		// Clients often close here instead of sending 0x01 (pgx does):
		// the refusal and its true reason stand all the same.
		return &Refusal{Kind: RefusedOAuth, Reason: reason + " (the client closed after the error)", Err: err, Discovery: tok == ""}
	}
	if len(in) != 1 || in[0] != kvsep {
		return refusal(saslViolation("malformed OAUTHBEARER message: the client did not end the failed exchange with 0x01"), ProofToken)
	}
	return &Refusal{Kind: RefusedOAuth, Reason: reason, Issuer: rule.Issuer, Scope: rule.Scope, Discovery: tok == "",
		InsufficientScope: scopeLacking}
}

// insufficientScope says whether err refused a genuine token for want of a
// scope.
func insufficientScope(err error) bool {
	var f *Failure
	return errors.As(err, &f) && f.insufficientScope
}

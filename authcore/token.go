package authcore

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/pgwarden/pgwarden/config"
)

// MaxTokenBytes bounds a token before any parsing: a megabyte of dots is
// refused in constant time and memory.
const MaxTokenBytes = 8 * 1024

// leeway is the clock skew tolerated on exp, nbf and iat.
const leeway = 60 * time.Second

// Tokens verifies bearer tokens: HS256 tokens pgwarden issued itself
// (iss = tokens.issuer, sub = user, signed with the user's secret) and
// tokens of external identity providers, whose keys come from their JWKS.
type Tokens struct {
	cfg       config.Tokens
	ownSet    bool
	users     *Users
	external  map[string]*externalIssuer
	allowAlgs []string
	now       func() time.Time

	// verified remembers tokens that verified, by SHA-256 of the token,
	// for at most a minute and never past their exp: a client repeating
	// its bearer token costs one digest, not a signature check. A reload
	// makes a new Tokens, so a changed secret or a removed user ends
	// cached tokens too.
	mu       sync.Mutex
	verified map[[32]byte]verifiedToken
}

type verifiedToken struct {
	user  *User
	until time.Time
	own   bool // pgwarden issued it
	// An external issuer's token was verified with these keys of set: once
	// a reload's fetch put others in force, it is verified again (a key the
	// provider removed must not live on here for a minute).
	set  *jwksSet
	keys *keyfunc.Keyfunc
}

const (
	verifiedTokensMax = 10000
	verifiedTokensTTL = time.Minute
)

type externalIssuer struct {
	cfg config.JWTIssuer
	set *jwksSet // its keys, read at each token: a refetch replaces them
}

// NewTokens prepares verification for cfg, with the key sets of its
// external issuers kept in jwks (nil: none may be configured). A JWKS
// endpoint that is down when a load first names it does not fail the load:
// keys arrive on a later refresh.
func NewTokens(cfg *config.Config, users *Users, jwks *JWKS) (*Tokens, error) {
	t := &Tokens{cfg: cfg.Tokens, ownSet: cfg.TokensSet, users: users, external: map[string]*externalIssuer{}, now: time.Now,
		verified: map[[32]byte]verifiedToken{}}
	if t.ownSet {
		t.allowAlgs = append(t.allowAlgs, "HS256")
	}
	for _, j := range cfg.JWTIssuers {
		if jwks == nil {
			return nil, fmt.Errorf("jwt_issuers %s: no key set store", j.Issuer)
		}
		set, err := jwks.set(j.JWKSURL, j.Refresh.Duration)
		if err != nil {
			return nil, fmt.Errorf("jwt_issuers %s: %v", j.Issuer, err)
		}
		t.external[j.Issuer] = &externalIssuer{cfg: j, set: set}
		for _, a := range j.Algorithms {
			if !slices.Contains(t.allowAlgs, a) {
				t.allowAlgs = append(t.allowAlgs, a)
			}
		}
	}
	return t, nil
}

// Enabled reports whether any token can be verified.
func (t *Tokens) Enabled() bool { return t != nil && (t.ownSet || len(t.external) > 0) }

// ClaimedUser reads the user a token names without verifying it, so that
// HBA can match before the token is proven. "" if it names none.
func (t *Tokens) ClaimedUser(raw string) string {
	if len(raw) > MaxTokenBytes {
		return ""
	}
	c := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, c); err != nil {
		return ""
	}
	iss, _ := c["iss"].(string)
	if iss == t.cfg.Issuer {
		sub, _ := c["sub"].(string)
		return sub
	}
	if ex := t.external[iss]; ex != nil {
		if u := t.externalUser(ex, c); u != nil {
			return u.Name
		}
		// A person without an entry, whom a role claim may let in
		// (roleFromClaim): the username claim is the name HBA matches.
		// Before, HTTP Bearer found no name here and refused every such
		// token ("the credentials name none").
		if ex.cfg.RoleClaim != "" {
			name, _ := c[ex.cfg.UsernameClaim].(string)
			return name
		}
	}
	return ""
}

// VerifyOwn proves a token only if pgwarden issued it (HS256, iss =
// tokens.issuer): under password rules such a token is a password proof
// handed on, where an identity provider's token is not.
// It works whether or not a [tokens] section was written: /_token issues
// with the defaults, and its tokens must prove their user where a password
// would.
func (t *Tokens) VerifyOwn(ctx context.Context, raw string) (*User, error) {
	if t == nil {
		return nil, badToken("no users")
	}
	return t.verify(ctx, raw, true)
}

// Verify proves a token and returns its user. Any failure is a *Failure
// with reason "bad token: ..." for the log.
func (t *Tokens) Verify(ctx context.Context, raw string) (*User, error) {
	if !t.Enabled() {
		return nil, badToken("no token issuer is configured")
	}
	return t.verify(ctx, raw, false)
}

// verify proves a token of any issuer verification is configured for, or,
// ownOnly, of pgwarden's own issuer only.
func (t *Tokens) verify(ctx context.Context, raw string, ownOnly bool) (*User, error) {
	if len(raw) > MaxTokenBytes {
		return nil, badToken("token too large")
	}
	key := sha256.Sum256([]byte(raw))
	now := t.now()
	t.mu.Lock()
	hit, ok := t.verified[key]
	t.mu.Unlock()
	if ok && now.Before(hit.until) && (hit.own || !ownOnly) && (hit.set == nil || hit.set.kf.Load() == hit.keys) {
		if r := hit.user.unusable(now); r != "" {
			return nil, Fail(r)
		}
		return hit.user, nil
	}
	var user *User
	var ext *externalIssuer
	var keys *keyfunc.Keyfunc
	var ownKey []byte // the user's secret that verified an own token
	algs, own := t.allowAlgs, t.ownSet
	if ownOnly {
		algs, own = []string{"HS256"}, true
	}
	parser := jwt.NewParser(jwt.WithValidMethods(algs), jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway), jwt.WithIssuedAt(), jwt.WithTimeFunc(t.now))
	c := jwt.MapClaims{}
	_, err := parser.ParseWithClaims(raw, c, func(tok *jwt.Token) (any, error) {
		// Keys come from the configuration only. And a token whose
		// "crit" names extensions must be refused by a verifier that
		// does not implement them (RFC 7515 section 4.1.11); this one
		// implements none.
		for _, h := range []string{"jku", "x5u", "jwk", "x5c", "crit"} {
			if _, ok := tok.Header[h]; ok {
				return nil, fmt.Errorf("header %q is refused", h)
			}
		}
		iss, _ := c["iss"].(string)
		alg := tok.Method.Alg()
		if iss == t.cfg.Issuer && own {
			if alg != "HS256" {
				return nil, fmt.Errorf("pgwarden's own tokens are HS256, not %s", alg)
			}
			sub, _ := c["sub"].(string)
			user = t.users.Lookup(sub)
			if user == nil || user.Secret == "" {
				return nil, errors.New("no such user or the user has no secret")
			}
			var err error
			ownKey, err = secretKey(user.Secret)
			return ownKey, err
		}
		ex := t.external[iss]
		if ownOnly {
			return nil, errors.New("not a token pgwarden issued: under a password rule only those prove a user")
		}
		if ex == nil {
			return nil, fmt.Errorf("unknown issuer %q", iss)
		}
		if !slices.Contains(ex.cfg.Algorithms, alg) {
			return nil, fmt.Errorf("algorithm %s is not allowed for issuer %s", alg, iss)
		}
		ext = ex
		keys = ex.set.kf.Load()
		return signingKey(ctx, *keys, tok)
	})
	if err != nil {
		return nil, badToken(err.Error())
	}
	if ext != nil {
		aud, _ := c.GetAudience()
		if !slices.Contains(aud, ext.cfg.Audience) {
			return nil, badToken("audience does not include " + ext.cfg.Audience)
		}
		// An identity provider that lets people set their own address
		// says so in email_verified; an address it has not verified is
		// anyone's to claim (the "nOAuth" takeovers), so it names no
		// one. A token without the claim is taken as its issuer wrote it.
		if ext.cfg.UsernameClaim == "email" {
			if v, ok := c["email_verified"]; ok && v != true {
				return nil, badToken("email_verified is not true: an address the identity provider has not verified names no one")
			}
		}
		if user = t.externalUser(ext, c); user == nil {
			var err error
			if user, err = roleFromClaim(ext.cfg, c); err != nil {
				return nil, err
			}
			// A name the users file holds belongs to that entry: an
			// identity provider's person of the same name, not bound to
			// it by [user.jwt], must not take its name (and with it the
			// rules that match the entry's roles).
			if t.users.Lookup(user.Name) != nil {
				return nil, badToken(fmt.Sprintf("%q is a users-file entry not bound to this identity ([user.jwt])", user.Name))
			}
		}
	}
	if ext == nil {
		if err := checkPasswordBinding(user, ownKey, c); err != nil {
			return nil, err
		}
	}
	if r := user.unusable(now); r != "" {
		return nil, Fail(r)
	}
	until := now.Add(verifiedTokensTTL)
	if exp, err := c.GetExpirationTime(); err == nil && exp != nil && exp.Time.Before(until) {
		until = exp.Time
	}
	t.mu.Lock()
	if len(t.verified) >= verifiedTokensMax {
		for k := range t.verified {
			delete(t.verified, k)
			break
		}
	}
	hit = verifiedToken{user: user, until: until, own: ext == nil}
	if ext != nil {
		hit.set, hit.keys = ext.set, keys
	}
	t.verified[key] = hit
	t.mu.Unlock()
	return user, nil
}

// externalUser finds the one user whose [user.jwt] matches the token's
// issuer, username claim and audience; none or several is no user.
func (t *Tokens) externalUser(ex *externalIssuer, c jwt.MapClaims) *User {
	name, _ := c[ex.cfg.UsernameClaim].(string)
	if name == "" {
		return nil
	}
	aud, _ := c.GetAudience()
	var found *User
	for _, u := range t.users.list {
		j := u.JWT
		if j == nil || j.Iss != ex.cfg.Issuer || j.Username != name {
			continue
		}
		if j.Aud != "" && !slices.Contains(aud, j.Aud) {
			continue
		}
		if found != nil {
			return nil
		}
		found = u
	}
	return found
}

// roleFromClaim makes the identity of a token whose person has no
// users-file entry, when the issuer says which claim names a backend role
// (role_claim) and which roles it may name (roles_allowed): the user is the
// username claim, logging in as that role. The reason of a refusal says
// which claim decided.
func roleFromClaim(cfg config.JWTIssuer, c jwt.MapClaims) (*User, error) {
	if cfg.RoleClaim == "" {
		return nil, badToken("no single user is bound to this identity")
	}
	name, _ := c[cfg.UsernameClaim].(string)
	if name == "" {
		return nil, badToken(fmt.Sprintf("claim %q (username_claim) is missing or not a string", cfg.UsernameClaim))
	}
	v, present := c[cfg.RoleClaim]
	if !present {
		return nil, badToken(fmt.Sprintf("no users-file entry for %q and no %q claim (role_claim)", name, cfg.RoleClaim))
	}
	role, ok := v.(string)
	if !ok || role == "" {
		return nil, badToken(fmt.Sprintf("claim %q (role_claim) is not a string naming a role", cfg.RoleClaim))
	}
	if !slices.Contains(cfg.RolesAllowed, role) {
		return nil, badToken(fmt.Sprintf("claim %q names role %q, which is not in roles_allowed", cfg.RoleClaim, role))
	}
	return &User{Name: name, BackendUser: role}, nil
}

// Explain says who a token proves and what decided it, for pgwarden
// explain: a users-file entry, or the role claim of its issuer; or why it is
// refused.
func (t *Tokens) Explain(ctx context.Context, raw string) string {
	u, err := t.Verify(ctx, raw)
	if err != nil {
		return "refused: " + ReasonOf(err)
	}
	if t.users.Lookup(u.Name) == u {
		return fmt.Sprintf("user %q (its users-file entry), backend role %q", u.Name, u.BackendRole())
	}
	c := jwt.MapClaims{}
	jwt.NewParser().ParseUnverified(raw, c)
	iss, _ := c["iss"].(string)
	claim := ""
	if ex := t.external[iss]; ex != nil {
		claim = ex.cfg.RoleClaim
	}
	return fmt.Sprintf("user %q (no users-file entry), backend role %q from claim %q of issuer %q (listed in roles_allowed)", u.Name, u.BackendRole(), claim, iss)
}

// VerifyFor proves a token only if issuer issued it: the rule of method
// oauth names one issuer, pgwarden's own (tokens.issuer) or a
// [[jwt_issuers]] entry. An identity provider's token must also carry
// every scope of the rule's scope (see missingScope); pgwarden's own
// tokens have no scopes, they prove their user whole.
func (t *Tokens) VerifyFor(ctx context.Context, raw, issuer, scope string) (*User, error) {
	if t == nil {
		return nil, badToken("no users")
	}
	if len(raw) > MaxTokenBytes {
		return nil, badToken("token too large")
	}
	c := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, c); err != nil {
		return nil, badToken(err.Error())
	}
	if iss, _ := c["iss"].(string); iss != issuer {
		return nil, badToken(fmt.Sprintf("issued by %q, the rule takes tokens of %q", iss, issuer))
	}
	if issuer == t.cfg.Issuer && t.external[issuer] == nil {
		return t.verify(ctx, raw, true)
	}
	u, err := t.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	// The claims were read before the signature was checked; the
	// signature covers them, so once verify has passed they are the
	// issuer's.
	if miss := missingScope(scope, c); miss != "" {
		return nil, &Failure{Reason: ReasonBadToken + Reason(fmt.Sprintf(": the token's scope lacks %q, which the rule asks for (scope %q)", miss, scope)),
			insufficientScope: true}
	}
	return u, nil
}

// oidcScopes are OpenID Connect's own scopes (Core 1.0, sections 5.4 and
// 11): they ask for an ID token, profile claims or a refresh token, not
// for access to a resource, and some identity providers (Microsoft Entra
// ID) leave them out of access tokens. A rule may list them for the
// client's sake; the token need not carry them.
var oidcScopes = []string{"openid", "profile", "email", "address", "phone", "offline_access"}

// missingScope is the first scope of the rule's space-separated list that
// the token does not carry, or "". A token's scopes are its "scope" claim
// (a space-separated string, RFC 8693 and RFC 9068) and its "scp" claim (a
// string or a list, as Okta and Entra ID write it). A token scope s
// satisfies a rule scope r written as a resource URI ending in "/s"
// ("api://pgwarden/pg.login"): Entra ID puts the bare name in scp.
func missingScope(scope string, c jwt.MapClaims) string {
	var have []string
	if s, ok := c["scope"].(string); ok {
		have = append(have, strings.Fields(s)...)
	}
	switch v := c["scp"].(type) {
	case string:
		have = append(have, strings.Fields(v)...)
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				have = append(have, s)
			}
		}
	}
	for _, r := range strings.Fields(scope) {
		if slices.Contains(oidcScopes, r) {
			continue
		}
		if !slices.ContainsFunc(have, func(s string) bool { return s == r || (s != "" && strings.HasSuffix(r, "/"+s)) }) {
			return r
		}
	}
	return ""
}

func badToken(why string) error { return &Failure{Reason: ReasonBadToken + Reason(": "+why)} }

func secretKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) < 32 {
		return nil, errSecret
	}
	return b, nil
}

var errSecret = errors.New("a token secret must be base64 of at least 32 bytes (pgwarden makes one at the first token; by hand: head -c 32 /dev/urandom | base64)")

// CheckSecret refuses a token secret that could sign no token: not base64,
// or shorter than 32 bytes, which would make a user's HS256 tokens open to
// an offline guess. Such a secret used to be stored as given and failed
// only at the first token.
func CheckSecret(s string) error {
	_, err := secretKey(s)
	return err
}

// NewSecret makes a user secret: 32 random bytes, base64.
func NewSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// ParseTokenLifetime reads a requested token lifetime ("1h", "90d"): ""
// is none (IssueToken then gives tokens.default_ttl), and zero or less is
// refused, since IssueToken would read it as none and issue a token of the
// default lifetime, far longer than asked. /_token and pgwarden token
// create both read it here (the CLI issued a 90-day token for --expire 0s
// until December 2026).
func ParseTokenLifetime(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := config.ParseDuration(s)
	if err == nil && d <= 0 {
		err = fmt.Errorf("expire %q is not a lifetime", s)
	}
	return d, err
}

// IssueToken signs an HS256 token for u valid for ttl.
func IssueToken(cfg config.Tokens, u *User, ttl time.Duration, now time.Time) (string, time.Time, error) {
	if ttl <= 0 {
		ttl = cfg.DefaultTTL.Duration
	}
	if ttl > cfg.MaxTTL.Duration {
		return "", time.Time{}, fmt.Errorf("token lifetime %s is over tokens.max_ttl %s", config.FormatDuration(ttl), config.FormatDuration(cfg.MaxTTL.Duration))
	}
	key, err := secretKey(u.Secret)
	if err != nil {
		return "", time.Time{}, err
	}
	exp := now.Add(ttl).Truncate(time.Second)
	claims := jwt.MapClaims{"iss": cfg.Issuer, "sub": u.Name, "iat": now.Unix(), "exp": exp.Unix()}
	if b := passwordBinding(key, u.Password); b != "" {
		claims[claimPasswordBinding] = b
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
	return s, exp, err
}

// claimPasswordBinding names the claim that ties a token pgwarden issues
// to the password its user had then (see passwordBinding).
const claimPasswordBinding = "pw_bind"

// passwordBinding is what a token carries of the stored password hash in
// force when it was issued: an HMAC of the hash under the user's secret,
// cut to 128 bits, so that it tells a reader of the token nothing about
// the hash without the secret. A token from /_token is a password proof
// handed on, so it must end with the password, however the password is
// changed. The CLI, the admin console and the web console make a new
// secret with a new password, which ends tokens by their signature; a
// hash replaced by hand in the users file, by configuration management or
// by pgwarden store import kept the secret, and before December 2026 a
// token minted with the old password (for up to tokens.max_ttl) kept
// working after the password was changed. "" for a user without password.
func passwordBinding(secret []byte, storedHash string) string {
	if storedHash == "" {
		return ""
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("pgwarden token password binding\x00"))
	m.Write([]byte(storedHash))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// checkPasswordBinding refuses a token of pgwarden's own, verified with
// secret, whose password binding is not that of user's password now: the password was changed or
// removed since it was issued. A token without the claim was issued before
// December 2026 (or for a user without password then) and is taken as
// before; a new secret ends it.
func checkPasswordBinding(user *User, secret []byte, c jwt.MapClaims) error {
	v, present := c[claimPasswordBinding]
	if !present {
		return nil
	}
	got, ok := v.(string)
	if !ok {
		return badToken("claim " + claimPasswordBinding + " is not a string")
	}
	want := passwordBinding(secret, user.Password)
	if want == "" {
		return badToken("the user's password was removed since the token was issued")
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return badToken("the user's password was changed since the token was issued")
	}
	return nil
}

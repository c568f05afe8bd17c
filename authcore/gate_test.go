package authcore

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/hba"
)

// fakeProver hands out what a test gives it.
type fakeProver struct {
	offer    Offer
	password string
	token    string
	cert     *x509.Certificate
	asked    []Proof
}

func (p *fakeProver) Offered() Offer { return p.offer }
func (p *fakeProver) Password(context.Context) (string, error) {
	p.asked = append(p.asked, ProofPassword)
	if p.offer != OfferPassword && p.offer != OfferInteractive {
		return "", ErrNotOffered
	}
	return p.password, nil
}
func (p *fakeProver) Token(context.Context) (string, error) {
	p.asked = append(p.asked, ProofToken)
	if p.token == "" {
		return "", ErrNotOffered
	}
	return p.token, nil
}
func (p *fakeProver) SASL() SASLExchange { return nil }
func (p *fakeProver) Certificate() (*x509.Certificate, error) {
	p.asked = append(p.asked, ProofCertificate)
	if p.cert == nil {
		return nil, errors.New("no certificate")
	}
	return p.cert, nil
}
func (p *fakeProver) PeerUser() (string, error) { return "", errors.New("no socket") }

// gateState serves alice under one HTTP rule for database db.
func gateState(t *testing.T, db, method, clientcert string) *State {
	t.Helper()
	us := mustUsers(t, "[[user]]\nname = \"alice\"\npassword = \""+mustHash(t, "alice-Pass-1")+"\"\n")
	cfg := config.Default()
	cfg.HBA = []config.HBARule{{Protocol: "http", Address: config.StringList{"all"}, SSL: "any", Database: config.StringList{db},
		User: config.StringList{"all"}, Method: method, ClientCert: clientcert}}
	rs, err := hba.FromConfig(cfg, hba.Env{TLS: true, ClientCA: true, JWT: true})
	if err != nil {
		t.Fatal(err)
	}
	return &State{Rules: rs, Users: us, Auth: NewAuthenticator(us, NewHashLimiter(1)), Tokens: &Tokens{users: us},
		FailureDelay: time.Hour, MaxDelay: time.Hour}
}

func attempt(db string) *Attempt {
	return &Attempt{Protocol: hba.ProtoHTTP, Addr: netip.MustParseAddr("192.0.2.1"), SSL: true, User: "alice", Database: db, Address: "192.0.2.1"}
}

func TestTheGateAsksForExactlyTheProofTheMethodWants(t *testing.T) {
	st := gateState(t, "pw", "password", "")
	g := &Gate{Throttle: NewThrottle(10, time.Hour)}
	p := &fakeProver{offer: OfferPassword, password: "alice-Pass-1"}
	id, ref, ev := g.Login(context.Background(), st, attempt("pw"), p)
	if ref != nil || id.User == nil || ev.Result != ResultOK || len(p.asked) != 1 || p.asked[0] != ProofPassword {
		t.Fatalf("id %+v ref %v ev %+v asked %v", id, ref, ev, p.asked)
	}
}

func TestAWrongPasswordIsThePasswordRefusalAndFeedsTheThrottle(t *testing.T) {
	st := gateState(t, "pw", "password", "")
	th := NewThrottle(10, time.Hour)
	g := &Gate{Throttle: th}
	_, ref, ev := g.Login(context.Background(), st, attempt("pw"), &fakeProver{offer: OfferPassword, password: "wrong"})
	if ref == nil || ref.Kind != RefusedPassword || ev.Result != ResultFailed || ev.Reason != string(ReasonWrongPassword) {
		t.Fatalf("ref %+v ev %+v", ref, ev)
	}
	// The next attempt of the pair waits before any check.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, ref, _ = g.Login(ctx, st, attempt("pw"), &fakeProver{offer: OfferPassword, password: "alice-Pass-1"})
	if ref == nil || ref.Kind != RefusedClientGone {
		t.Fatalf("an attempt right after a failure was checked: %+v", ref)
	}
}

func TestAWrongKindOfCredentialNamesTheProofTheRuleWants(t *testing.T) {
	st := gateState(t, "jwt", "jwt", "")
	g := &Gate{Throttle: NewThrottle(10, time.Hour)}
	_, ref, _ := g.Login(context.Background(), st, attempt("jwt"), &fakeProver{offer: OfferPassword, password: "alice-Pass-1"})
	if ref == nil || ref.Kind != RefusedCredential || ref.Wants != ProofToken {
		t.Fatalf("ref %+v", ref)
	}
}

func TestClientcertAsksForTheCertificateBeforeTheMethodAndItsNameAfter(t *testing.T) {
	st := gateState(t, "full", "password", "verify-full")
	g := &Gate{Throttle: NewThrottle(10, time.Hour)}
	// No certificate: refused before the password is asked for.
	p := &fakeProver{offer: OfferPassword, password: "alice-Pass-1"}
	_, ref, _ := g.Login(context.Background(), st, attempt("full"), p)
	if ref == nil || ref.Kind != RefusedCertRequired || len(p.asked) != 1 || p.asked[0] != ProofCertificate {
		t.Fatalf("ref %+v asked %v", ref, p.asked)
	}
	// Another user's certificate: the password is checked first, then the
	// name refuses.
	p = &fakeProver{offer: OfferPassword, password: "alice-Pass-1", cert: &x509.Certificate{Subject: pkix.Name{CommonName: "bob"}}}
	_, ref, _ = g.Login(context.Background(), st, attempt("full"), p)
	if ref == nil || ref.Kind != RefusedCertName || len(p.asked) != 2 || p.asked[1] != ProofPassword {
		t.Fatalf("ref %+v asked %v", ref, p.asked)
	}
}

func TestAConsoleSessionIsRefusedUnderARuleThatProvesNoPassword(t *testing.T) {
	st := gateState(t, "trustdb", "trust", "")
	g := &Gate{Throttle: NewThrottle(10, time.Hour)}
	a := attempt("trustdb")
	a.Console = true
	_, ref, _ := g.Login(context.Background(), st, a, &fakeProver{offer: OfferSession})
	if ref == nil || ref.Kind != RefusedCredential {
		t.Fatalf("a session under trust: %+v", ref)
	}
}

// A login proved against one state is refused when the state in force
// revokes it, and not for any other change.
func TestRevokedSinceRefusesWhatTheStateInForceRevoked(t *testing.T) {
	now := time.Now()
	users := func(pw ...string) *Users {
		var list []*User
		for i, p := range pw {
			list = append(list, &User{Name: fmt.Sprintf("u%d", i), Password: p})
		}
		us, err := NewUsers(list)
		if err != nil {
			t.Fatal(err)
		}
		return us
	}
	old := &State{Users: users("a", "b")}
	if ref := RevokedSince(old, old, "u0", now); ref != nil {
		t.Fatalf("the same state: %v", ref)
	}
	unrelated := &State{Users: users("a", "other")}
	if ref := RevokedSince(old, unrelated, "u0", now); ref != nil {
		t.Fatalf("another user's change: %v", ref)
	}
	if ref := RevokedSince(old, unrelated, "u1", now); ref == nil || ref.Kind != RefusedPassword {
		t.Fatalf("the user's own password changed: %v", ref)
	}
	down := &State{Users: old.Users, Unavailable: "the store is down"}
	if ref := RevokedSince(old, down, "u0", now); ref == nil || ref.Kind != RefusedUnavailable {
		t.Fatalf("the store unreachable: %v", ref)
	}
}

// Under trust a bearer token is verified, not taken at its word: HBA
// matched the user it names, and only its signature says it is theirs. A
// token that verifies logs in its user; an unsigned, expired or forged one
// is the token refusal (401 over HTTP), as under jwt.
func TestUnderTrustABearerTokenIsVerifiedNotTakenAtItsWord(t *testing.T) {
	secret := NewSecret()
	us := mustUsers(t, "[[user]]\nname = \"alice\"\nsecret = \""+secret+"\"\n")
	cfg := config.Default()
	cfg.HBA = []config.HBARule{{Protocol: "http", Address: config.StringList{"all"}, SSL: "any", Database: config.StringList{"all"},
		User: config.StringList{"all"}, Method: "trust"}}
	rs, err := hba.FromConfig(cfg, hba.Env{TLS: true, ClientCA: true, JWT: true})
	if err != nil {
		t.Fatal(err)
	}
	toks, err := NewTokens(cfg, us, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := &State{Rules: rs, Users: us, Auth: NewAuthenticator(us, NewHashLimiter(1)), Tokens: toks,
		FailureDelay: time.Millisecond, MaxDelay: time.Millisecond}
	g := &Gate{Throttle: NewThrottle(10, time.Hour)}
	now := time.Now()
	good, _, err := IssueToken(cfg.Tokens, us.Lookup("alice"), time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	expired, _, err := IssueToken(cfg.Tokens, us.Lookup("alice"), time.Minute, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	forged, _, err := IssueToken(cfg.Tokens, &User{Name: "alice", Secret: NewSecret()}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	// alg none, claiming alice: {"alg":"none","typ":"JWT"}.{"iss":"pgwarden","sub":"alice","exp":<later>}.
	unsigned := fmt.Sprintf("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.%s.", base64.RawURLEncoding.EncodeToString(
		[]byte(fmt.Sprintf(`{"iss":"pgwarden","sub":"alice","exp":%d}`, now.Add(time.Hour).Unix()))))
	for name, tc := range map[string]struct {
		token string
		ok    bool
	}{"a token that verifies": {good, true}, "expired": {expired, false}, "signed with another key": {forged, false}, "unsigned": {unsigned, false}} {
		a := attempt("postgres")
		a.User = toks.ClaimedUser(tc.token)
		id, ref, ev := g.Login(context.Background(), st, a, &fakeProver{offer: OfferToken, token: tc.token})
		if tc.ok != (ref == nil) {
			t.Errorf("%s: refusal %+v (event %+v)", name, ref, ev)
			continue
		}
		if tc.ok && (id.User == nil || id.User.Name != "alice") {
			t.Errorf("%s: logged in as %+v", name, id.User)
		}
		if !tc.ok && (ref.Kind != RefusedPassword || ev.Result != ResultFailed) {
			t.Errorf("%s: refusal %+v, event %+v", name, ref, ev)
		}
	}
	// A password sent anyway is still ignored, as trust means.
	if _, ref, _ := g.Login(context.Background(), st, attempt("postgres"), &fakeProver{offer: OfferPassword, password: "anything"}); ref != nil {
		t.Fatalf("Basic under trust: %+v", ref)
	}
}

// leavingProver is a client that closes its connection when asked for its
// password, as pg_isready does.
type leavingProver struct{ fakeProver }

func (p *leavingProver) Password(context.Context) (string, error) {
	return "", fmt.Errorf("%w: %w", ErrClientLeft, io.EOF)
}

func TestAClientThatLeavesInsteadOfAnsweringIsAbandonedNotFailed(t *testing.T) {
	st := gateState(t, "pw", "password", "")
	th := NewThrottle(10, time.Hour)
	g := &Gate{Throttle: th}
	_, ref, ev := g.Login(context.Background(), st, attempt("pw"), &leavingProver{fakeProver{offer: OfferInteractive}})
	if ref == nil || ev.Result != ResultAbandoned || !errors.Is(ref.Err, io.EOF) {
		t.Fatalf("ref %+v ev %+v", ref, ev)
	}
	// Nothing was guessed: the next attempt is checked at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ref, ev := g.Login(ctx, st, attempt("pw"), &fakeProver{offer: OfferPassword, password: "alice-Pass-1"}); ref != nil || ev.Result != ResultOK {
		t.Fatalf("an abandoned attempt held the next one: %+v", ref)
	}
	// A client that leaves while it waits for the throttle is abandoned too.
	g.Login(context.Background(), st, attempt("pw"), &fakeProver{offer: OfferPassword, password: "wrong"})
	if _, ref, ev := g.Login(ctx, st, attempt("pw"), &fakeProver{offer: OfferPassword, password: "alice-Pass-1"}); ref == nil || ref.Kind != RefusedClientGone || ev.Result != ResultAbandoned {
		t.Fatalf("ref %+v ev %+v", ref, ev)
	}
}

// roleStore is an auth_query whose names are PostgreSQL roles with
// memberships, or which cannot answer (err).
type roleStore struct {
	roles map[string][]string
	err   error
	asked int
}

func (s *roleStore) User(context.Context, string) (*User, error) { return nil, nil }
func (s *roleStore) Verify(context.Context, string, string) (bool, bool, error) {
	return false, false, nil
}
func (s *roleStore) Roles(_ context.Context, name string) ([]string, error) {
	s.asked++
	return s.roles[name], s.err
}

// A name from the external store meets "+role" entries with its
// memberships there; a store that cannot say refuses the login (the rule
// that would decide is unknown), and users-file names never ask it.
func TestAGroupEntryReadsAnExternalNamesMemberships(t *testing.T) {
	us := mustUsers(t, "[[user]]\nname = \"alice\"\npassword = \""+mustHash(t, "alice-Pass-1")+"\"\n")
	cfg := config.Default()
	cfg.HBA = []config.HBARule{
		{Protocol: "all", Address: config.StringList{"all"}, SSL: "any", Database: config.StringList{"all"}, User: config.StringList{"+admins"}, Method: "reject"},
		{Protocol: "all", Address: config.StringList{"all"}, SSL: "any", Database: config.StringList{"all"}, User: config.StringList{"all"}, Method: "trust"},
	}
	rs, err := hba.FromConfig(cfg, hba.Env{})
	if err != nil {
		t.Fatal(err)
	}
	store := &roleStore{roles: map[string][]string{"bob": {"bob", "ops", "admins"}, "carol": {"carol"}}}
	st := &State{Rules: rs, Users: us, Auth: NewAuthenticator(us, NewHashLimiter(1)).WithExternal(store), FailureDelay: time.Hour, MaxDelay: time.Hour}
	g := &Gate{Throttle: NewThrottle(10, time.Hour)}
	try := func(user string) *Refusal {
		a := attempt("app")
		a.User = user
		_, ref, _ := g.Login(context.Background(), st, a, &fakeProver{offer: OfferNone})
		return ref
	}
	if ref := try("bob"); ref == nil || ref.Kind != RefusedRejected {
		t.Fatalf("bob, a member of admins: %+v, want the reject rule", ref)
	}
	if ref := try("carol"); ref != nil {
		t.Fatalf("carol, no member: %+v", ref)
	}
	asked := store.asked
	if ref := try("alice"); ref != nil || store.asked != asked {
		t.Fatalf("alice of the users file: %+v, store asked %d times more", ref, store.asked-asked)
	}
	store.err = errors.New("connection refused")
	if ref := try("carol"); ref == nil || ref.Kind != RefusedUnavailable {
		t.Fatalf("store down: %+v, want refused as unavailable", ref)
	}
}

package authcore

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/hba"
)

// Gate makes the one decision of who gets in, for both frontends: the HBA
// match, reject, clientcert, the rule's method, the user's usability, the
// throttle and the audit event. The frontends translate a protocol into an
// Attempt and a Prover, and the result into an answer; they decide nothing.
type Gate struct {
	Throttle *Throttle
}

// State is what one decision is made against: one snapshot's rules, users
// and verifiers, and the throttle settings in force.
type State struct {
	Rules        hba.Rules
	Users        *Users
	Auth         *Authenticator
	Tokens       *Tokens
	FailureDelay time.Duration
	MaxDelay     time.Duration
	// Unavailable, when set, refuses every attempt with that reason: the
	// shared user store is out of reach, and what is cached here may be
	// stale (a revoked password), so nothing is decided from it.
	Unavailable string
}

// Attempt is who a connection or a request claims to be, as the frontend
// read it: nothing in it is proven yet.
type Attempt struct {
	Protocol    hba.Protocol
	Addr        netip.Addr // the client's, after PROXY or X-Forwarded-For from a trusted proxy
	Local       bool       // the unix socket
	SSL         bool       // TLS on the wire, HTTPS over HTTP
	User        string
	Database    string
	Replication bool // physical replication
	// Address names the client in the audit log and the throttle.
	Address  string
	ClientID uint64
	// Credential is what an HTTP request offered, for the audit log.
	Credential string
	// Console marks a web console login or session: only methods that
	// prove a password may open or use one, and only for users-file users.
	Console bool
	// Login marks the console's login form: every failure of it feeds the
	// throttle, so the page cannot tell a refusing rule from a wrong
	// password by how the next attempt waits.
	Login bool
}

// Offer is the kind of credential a client has already sent (HTTP), or
// Interactive when the gate may ask for whatever the method wants (the
// wire).
type Offer int

// The offers.
const (
	OfferNone        Offer = iota // no credential (HTTP default user, client certificate only)
	OfferInteractive              // the wire: the gate asks for what the method needs
	OfferPassword                 // HTTP Basic, inline credentials, a console login form
	OfferToken                    // HTTP Authorization: Bearer
	OfferSession                  // a console session cookie, checked by the frontend
)

// Proof is what a method asks the client for; a refusal of the wrong kind
// of credential names it.
type Proof string

// The proofs.
const (
	ProofNone        Proof = "none"
	ProofPassword    Proof = "password"
	ProofToken       Proof = "bearer token"
	ProofCertificate Proof = "client certificate"
	ProofPeer        Proof = "peer credentials"
)

// Prover obtains, from the client, exactly the proof a method needs. The
// wire asks the client over the protocol; HTTP hands out what the request
// carried and answers ErrNotOffered for anything else.
type Prover interface {
	Offered() Offer
	// Password returns a cleartext password (wire: AuthenticationCleartextPassword).
	Password(ctx context.Context) (string, error)
	// Token returns a bearer token (wire: carried as the cleartext password).
	Token(ctx context.Context) (string, error)
	// SASL returns the SASL exchange of the wire; nil over HTTP, where the
	// SCRAM methods take a password instead.
	SASL() SASLExchange
	// Certificate returns the client certificate verified against
	// client_ca_file, or an error saying why there is none.
	Certificate() (*x509.Certificate, error)
	// PeerUser returns the OS user of the unix socket's peer.
	PeerUser() (string, error)
}

// SASLExchange is the wire's side of a SASL authentication.
type SASLExchange interface {
	// ChannelBinding is the tls-server-end-point data; nil without TLS.
	ChannelBinding() []byte
	// Offer sends AuthenticationSASL and returns the mechanism the client
	// chose and its initial response.
	Offer(mechs []string) (mech string, data []byte, err error)
	// Continue sends a challenge and returns the client's answer.
	Continue(out []byte) ([]byte, error)
	// Final sends the server's last message.
	Final(out []byte) error
}

// ClientWatcher is implemented by a Prover that can tell, while the gate
// waits for the throttle, that its client left (the wire: a closed or
// talking socket; HTTP uses the request's context instead). The returned
// context ends when the client leaves; done is called after the wait.
type ClientWatcher interface {
	WatchClient(ctx context.Context) (watched context.Context, done func())
}

// ErrNotOffered is what an HTTP Prover answers for a credential the request
// did not carry.
var ErrNotOffered = errors.New("the client did not offer this credential")

// Identity is who the gate let in.
type Identity struct {
	Name string
	// User is the users-file (or auth_query) entry; nil for a trusted name
	// that has none.
	User *User
	// Password is the client's cleartext password, kept only for [backend]
	// passthrough.
	Password string
	// SCRAM are the keys a SCRAM exchange on the wire proved, kept only
	// for [backend] passthrough, where no cleartext password exists.
	SCRAM *SCRAMKeys
	Rule  *hba.Rule
}

// RefusalKind says which refusal of SPEC sections 5 and 6 a client gets.
type RefusalKind int

// The kinds of refusal.
const (
	RefusedNoRule       RefusalKind = iota + 1 // 28000 no HBA rule; HTTP 403
	RefusedRejected                            // 28000 HBA rejects; HTTP 403
	RefusedPassword                            // 28P01, for every password, user, token or SCRAM failure; HTTP 401
	RefusedCertRequired                        // 28000 connection requires a valid client certificate
	RefusedCertName                            // 28000 certificate authentication failed
	RefusedPeer                                // 28000 Peer authentication failed
	RefusedProtocol                            // 08P01: a malformed exchange
	RefusedCredential                          // the wrong kind of credential for the rule; HTTP 401 naming what it wants
	RefusedClientGone                          // the client left while waiting; nobody to answer
	RefusedBackend                             // the backend refused pgwarden's login (set after the gate)
	RefusedUnavailable                         // the shared user store is out of reach: fail closed
	RefusedOAuth                               // 28000 OAuth bearer authentication failed; HTTP 401 Bearer invalid_token
)

// ErrClientLeft is what a Prover's error wraps when the client closed its
// connection instead of answering: the attempt was abandoned, not failed.
var ErrClientLeft = errors.New("the client closed its connection before it answered")

// Refusal is a client the gate did not let in: its kind decides what the
// client is told; Reason is the truth, for the audit log only.
type Refusal struct {
	Kind   RefusalKind
	Reason string
	// Wants is the proof the rule asks for (RefusedCredential).
	Wants Proof
	// Issuer and Scope tell a client refused by method oauth where to get
	// a token (RefusedOAuth).
	Issuer, Scope string
	// InsufficientScope: the oauth token was genuine but lacked a scope of
	// the rule (HTTP answers 403 insufficient_scope, RFC 6750).
	InsufficientScope bool
	// Discovery: an oauth client that sent no token, to learn where to get
	// one (libpq 18's first step). It guessed nothing, so the throttle
	// does not count it: its next connection, with a token, is not held.
	Discovery bool
	// Err is the frontend's own error when a prover failed (a protocol
	// violation it wants to report as it is, a timeout, a closed socket).
	Err error
}

func (r *Refusal) Error() string { return r.Reason }

func (r *Refusal) Unwrap() error { return r.Err }

// Login decides whether the attempt gets in: the throttle's wait first
// (SPEC section 7: before any check), then the first matching HBA rule, reject,
// clientcert's certificate, the rule's method (which asks p for its proof),
// clientcert=verify-full's name, and the user's usability. It returns the
// identity or the refusal, and the audit event either way, for the frontend
// to log once it knows the rest (a backend that refuses is audited too).
func (g *Gate) Login(ctx context.Context, st *State, a *Attempt, p Prover) (*Identity, *Refusal, *AuditEvent) {
	ev := &AuditEvent{Protocol: string(a.Protocol), ClientID: a.ClientID, Address: a.Address, User: clipName(a.User),
		Database: clipName(a.Database), SSL: a.SSL, Credential: a.Credential}
	// Hash work waits its source's turn (see HashLimiter).
	ctx = WithSource(ctx, g.Throttle.Source(a.Address))
	done := nop
	id, ref := g.login(ctx, st, a, p, ev, &done)
	// After Success or Failure, or for an end with neither: the pair's
	// next attempt goes ahead (see Throttle.Wait).
	defer done()
	if ref == nil {
		ev.Result = ResultOK
		g.Throttle.Success(a.Address, a.User)
		return id, nil, ev
	}
	if ev.Result == "" {
		ev.Result = ResultFailed
		if ref.Kind == RefusedClientGone || errors.Is(ref.Err, ErrClientLeft) {
			ev.Result = ResultAbandoned
		}
	}
	ev.Reason = ref.Reason
	// Password failures feed the throttle; on the web console's login
	// form every failure does, so the page cannot tell a refusing rule
	// from a wrong password by how the next attempt waits.
	if (ref.Kind == RefusedPassword || ref.Kind == RefusedOAuth || a.Login) && ref.Kind != RefusedClientGone && !ref.Discovery {
		g.Throttle.Failure(a.Address, a.User, st.FailureDelay, st.MaxDelay)
	}
	return nil, ref, ev
}

func (g *Gate) login(ctx context.Context, st *State, a *Attempt, p Prover, ev *AuditEvent, done *func()) (*Identity, *Refusal) {
	if st.Unavailable != "" {
		return nil, &Refusal{Kind: RefusedUnavailable, Reason: st.Unavailable}
	}
	if len(a.User) > MaxNameBytes || len(a.Database) > MaxNameBytes {
		// Refused before the throttle keeps the name or a hash is run.
		return nil, &Refusal{Kind: RefusedProtocol, Reason: fmt.Sprintf(
			"the user or database name is over %d bytes (user %d, database %d)", MaxNameBytes, len(a.User), len(a.Database))}
	}
	var err error
	if *done, err = g.wait(ctx, st, a, p); err != nil {
		return nil, &Refusal{Kind: RefusedClientGone, Reason: "the client left while its attempt waited for the throttle", Err: err}
	}
	if a.User == "" {
		return nil, &Refusal{Kind: RefusedPassword, Reason: "no user: the credentials name none"}
	}
	if strings.IndexByte(a.User, 0) >= 0 || strings.IndexByte(a.Database, 0) >= 0 {
		// PostgreSQL's startup packet ends a name at a zero byte: HBA
		// would judge "admin\x00x" and a backend that cut it would see
		// "admin". HTTP names can hold one (Basic, JSON, ?db=).
		return nil, &Refusal{Kind: RefusedProtocol, Reason: "the user or database name holds a zero byte"}
	}
	req := &hba.Request{Protocol: a.Protocol, Addr: a.Addr, Local: a.Local, SSL: a.SSL, Database: a.Database,
		User: a.User, Replication: a.Replication}
	if u := st.Users.Lookup(a.User); u != nil {
		req.Roles = u.Roles
	} else if st.Auth != nil && st.Auth.HasExternal() && st.Rules.NeedsRoles(req) {
		// A name from [auth_query] is a PostgreSQL role: "+role" and
		// "samerole" mean its memberships there, as in PostgreSQL's
		// own pg_hba.conf. Without them a "+admins reject" rule would
		// let the admins through to the rules below it. NeedsRoles is
		// a second pass over the rules: only where a store can answer.
		roles, err := st.Auth.ExternalRoles(ctx, a.User)
		if err != nil {
			if ctx.Err() != nil {
				return nil, &Refusal{Kind: RefusedClientGone, Reason: string(ReasonCanceled), Err: ctx.Err()}
			}
			return nil, &Refusal{Kind: RefusedUnavailable, Reason: "the role memberships of the user could not be read through auth_query: " + err.Error()}
		}
		req.Roles = roles
	}
	rule := st.Rules.Match(req)
	if rule == nil {
		ev.Result = ResultNoRule
		return nil, &Refusal{Kind: RefusedNoRule, Reason: "no HBA rule matched"}
	}
	ev.Rule, ev.Method = rule.Number, string(rule.Method)
	m, ok := methods[rule.Method]
	if !ok || (a.Protocol == hba.ProtoHTTP && !m.http) || (a.Protocol == hba.ProtoPG && !m.pg) {
		// Config load refuses such rules; this is a last line.
		return nil, &Refusal{Kind: RefusedRejected, Reason: fmt.Sprintf("method %s cannot serve protocol %s", rule.Method, a.Protocol)}
	}
	if rule.Method == hba.Reject {
		ev.Result = ResultRejected
		return nil, &Refusal{Kind: RefusedRejected, Reason: "rule method is reject"}
	}
	if a.Console && !rule.Method.ProvesPassword() {
		// A console session stands for a proven password; a rule that
		// asks for something else (or nothing) does not accept one.
		return nil, &Refusal{Kind: RefusedCredential, Wants: m.proof, Reason: fmt.Sprintf(
			"console sessions are accepted only under password or scram-sha-256 rules (rule %d is %s)", rule.Number, rule.Method)}
	}
	// clientcert= asks for a valid certificate before the method runs, as
	// PostgreSQL does; verify-full's name check comes after it.
	var leaf *x509.Certificate
	if rule.ClientCert != "" {
		var err error
		if leaf, err = p.Certificate(); err != nil {
			return nil, &Refusal{Kind: RefusedCertRequired, Reason: "clientcert: " + err.Error()}
		}
	}
	id := &Identity{Name: a.User, Rule: rule}
	if ref := m.run(ctx, st, a, p, id); ref != nil {
		return nil, ref
	}
	if strings.IndexByte(id.Name, 0) >= 0 || (id.User != nil && strings.IndexByte(id.User.BackendUser, 0) >= 0) {
		return nil, &Refusal{Kind: RefusedProtocol, Reason: "the proven identity's name holds a zero byte"}
	}
	if rule.ClientCert == "verify-full" {
		cn, err := CommonName(leaf)
		if err != nil {
			return nil, &Refusal{Kind: RefusedCertName, Reason: "clientcert: " + err.Error()}
		}
		if cn != a.User {
			return nil, &Refusal{Kind: RefusedCertName, Reason: fmt.Sprintf("clientcert: certificate CN %q is not the user", cn)}
		}
	}
	if id.User != nil {
		if r := id.User.unusable(st.Auth.now()); r != "" {
			return nil, &Refusal{Kind: RefusedPassword, Reason: string(r)}
		}
	}
	return id, nil
}

// RevokedSince refuses a login that old, the state it was proved against,
// accepted and cur, the state in force now, revokes (see Revoked): a login
// runs for as long as its client's exchange or a slow hash takes, and a
// reload that revokes a password in the meantime must not let the old one
// through. nil when nothing changed for name; the store being unreachable
// now refuses too.
func RevokedSince(old, cur *State, name string, now time.Time) *Refusal {
	if cur == old {
		return nil
	}
	if cur.Unavailable != "" {
		return &Refusal{Kind: RefusedUnavailable, Reason: cur.Unavailable}
	}
	if slices.Contains(Revoked(old.Users, cur.Users, now), name) {
		return &Refusal{Kind: RefusedPassword, Reason: "the login was revoked by a reload during the login"}
	}
	return nil
}

// doneContext is already canceled: a Throttle.Wait on it only looks
// whether the attempt may go ahead now.
var doneContext = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// wait holds the attempt until the throttle lets (address, user) be
// checked, and returns the throttle's done (see Throttle.Wait). Most
// attempts have nothing to wait for, and learn it without a watcher or a
// context of their own (doneContext).
func (g *Gate) wait(ctx context.Context, st *State, a *Attempt, p Prover) (func(), error) {
	if done, err := g.Throttle.Wait(doneContext, a.Address, a.User, st.FailureDelay, st.MaxDelay); err == nil {
		return done, nil
	}
	if w, ok := p.(ClientWatcher); ok {
		watched, done := w.WatchClient(ctx)
		defer done()
		ctx = watched
	}
	return g.Throttle.Wait(ctx, a.Address, a.User, st.FailureDelay, st.MaxDelay)
}

// refusal turns what a method's check returned into a refusal: a prover's
// own error stays the frontend's (Err), a credential of the wrong kind
// names the proof wanted, and every authcore failure is the one password
// failure.
func refusal(err error, wants Proof) *Refusal {
	var f *Failure
	switch {
	case err == nil:
		return nil
	case errors.As(err, &f):
		return &Refusal{Kind: RefusedPassword, Reason: string(f.Reason)}
	case errors.Is(err, ErrNotOffered):
		return &Refusal{Kind: RefusedCredential, Wants: wants, Reason: fmt.Sprintf("the rule wants a %s", wants)}
	case errors.Is(err, ErrSASLProtocol):
		return &Refusal{Kind: RefusedProtocol, Reason: err.Error(), Err: err}
	case errors.Is(err, context.Canceled):
		return &Refusal{Kind: RefusedClientGone, Reason: string(ReasonCanceled), Err: err}
	case errors.Is(err, ErrStoreDown):
		return &Refusal{Kind: RefusedUnavailable, Reason: err.Error()}
	}
	return &Refusal{Kind: RefusedProtocol, Reason: err.Error(), Err: err}
}

// SessionAdmits says whether a console session of a.User would pass the
// rule stage of Login for a.Database (a rule matches, it takes a proven
// password, and it demands no client certificate the attempt lacks). It
// checks no credential and waits for no throttle: the web console uses it
// to offer only the databases its session can open, and Login still
// decides every request.
func SessionAdmits(st *State, a *Attempt, hasCertificate bool) bool {
	req := &hba.Request{Protocol: a.Protocol, Addr: a.Addr, Local: a.Local, SSL: a.SSL, Database: a.Database, User: a.User}
	if u := st.Users.Lookup(a.User); u != nil {
		req.Roles = u.Roles
	}
	rule := st.Rules.Match(req)
	return rule != nil && rule.Method.ProvesPassword() && (rule.ClientCert == "" || hasCertificate)
}

// clipName keeps an over-long name out of the audit line whole: its start
// and its length say enough.
func clipName(name string) string {
	if len(name) <= MaxNameBytes {
		return name
	}
	return fmt.Sprintf("%s... (%d bytes)", strings.ToValidUTF8(name[:64], ""), len(name))
}

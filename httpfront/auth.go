package httpfront

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/certs"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/hba"
	"github.com/pgwarden/pgwarden/snapshot"
)

// credentials are what a request offered to prove itself.
type credentials struct {
	basic    bool
	bearer   string
	inline   bool
	user     string
	password string
	cert     *x509.Certificate // verified against client_ca_file
	// session is the console session a cookie named, when the request
	// sent no other credentials (see sessionCredentials).
	session *Session
	// staleSession is a session cookie that names no live session.
	staleSession bool
	// login marks the console's login form: a password that, proven, opens
	// a session, so only the methods that may hold one accept it.
	login bool
}

func (c *credentials) sent() bool {
	return c.basic || c.bearer != "" || c.inline || c.session != nil || c.staleSession || c.login
}

// kind names the credential for the audit log.
func (c *credentials) kind() string {
	switch {
	case c.login:
		return "console login"
	case c.session != nil, c.staleSession:
		return "session"
	case c.basic:
		return "basic"
	case c.bearer != "":
		return "bearer"
	case c.inline:
		return "inline"
	case c.cert != nil:
		return "certificate"
	}
	return "none"
}

// authResult is who the request proved to be.
type authResult struct {
	name     string
	user     *authcore.User // nil for a trusted name without an entry
	password string         // for [backend] passthrough
	method   hba.Method
	// event is the audit event, kept so that a backend refusing
	// pgwarden's login can be recorded against the same attempt.
	event *authcore.AuditEvent
}

// authFailure is an authentication refusal with its HTTP status and the
// true reason for the audit log.
type authFailure struct {
	status int
	code   string
	msg    string
	scheme challenge
	reason string
	// issuer and scope: an oauth rule's, for the Bearer challenge.
	issuer, scope string
	// insufficientScope: a genuine token without the rule's scope, 403
	// with error="insufficient_scope" (RFC 6750 section 3.1).
	insufficientScope bool
}

// challenge is the WWW-Authenticate scheme of a 401.
type challenge int

const (
	challengeBasic challenge = iota
	challengeBearer
	// challengeCookie answers failures of a session cookie. Browsers prompt
	// for Basic challenges, also on fetch calls, so the console's calls get
	// the cookie scheme of draft-broyer-http-cookie-auth instead.
	challengeCookie
	// challengeNone: the rule wants a client certificate, which no header
	// can carry.
	challengeNone
)

func (e *authFailure) Error() string { return e.reason }

// readCredentials extracts credentials from headers, the TLS session and
// the body's inline credentials. Malformed or doubled credentials are a
// failure, never silently ignored.
func readCredentials(r *http.Request, snap *snapshot.Snapshot, inline *inlineCredentials) (*credentials, *authFailure) {
	c := &credentials{}
	bad := func(why string) *authFailure {
		return &authFailure{status: 0, code: codeInvalidAuthorization, msg: "invalid authorization", reason: why}
	}
	if q := r.URL.Query(); q.Has("access_token") || q.Has("token") || q.Has("password") {
		// Secrets in URLs end up in logs and browser histories.
		return nil, &authFailure{status: http.StatusBadRequest, code: codeInvalidAuthorization, msg: "credentials are not accepted in the URL", reason: "credentials in the URL"}
	}
	hs := r.Header.Values("Authorization")
	if len(hs) > 1 {
		return nil, bad("more than one Authorization header")
	}
	if len(hs) == 1 {
		scheme, value, _ := strings.Cut(hs[0], " ")
		value = strings.TrimSpace(value)
		switch strings.ToLower(scheme) {
		case "basic":
			raw, err := base64.StdEncoding.DecodeString(value)
			if err != nil {
				return nil, bad("Basic credentials are not base64")
			}
			user, pw, ok := strings.Cut(string(raw), ":")
			if !ok || user == "" || !utf8.ValidString(user) {
				return nil, bad("malformed Basic credentials")
			}
			c.basic, c.user, c.password = true, user, pw
		case "bearer":
			if value == "" || len(value) > authcore.MaxTokenBytes {
				f := bad("empty or oversized bearer token")
				f.scheme = challengeBearer
				return nil, f
			}
			c.bearer = value
		default:
			return nil, bad("unsupported authorization scheme")
		}
	}
	if inline != nil {
		if c.basic || c.bearer != "" {
			return nil, &authFailure{status: http.StatusBadRequest, code: codeInvalidAuthorization, msg: "credentials given twice (header and body)", reason: "credentials given twice"}
		}
		if inline.User == "" || !utf8.ValidString(inline.User) {
			return nil, bad("inline credentials without a user")
		}
		c.inline, c.user, c.password = true, inline.User, inline.Password
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && snap.TLS != nil {
		if leaf, err := snap.TLS.VerifyClient(r.TLS.PeerCertificates, time.Now()); err == nil {
			c.cert = leaf
		}
	}
	return c, nil
}

// authenticate proves the request's credentials through the one login
// gate (authcore.Gate), under the first matching HBA rule (SPEC section 4):
// the claimed user is matched first and proved by the rule's method
// afterwards. Credentials that were sent and fail never fall back to the
// default user.
func (s *Server) authenticate(r *http.Request, snap *snapshot.Snapshot, creds *credentials, db string) (*authResult, *authFailure) {
	start := time.Now()
	cfg := snap.Config
	name := creds.user
	switch {
	case creds.bearer != "":
		name = snap.Tokens.ClaimedUser(creds.bearer)
	case name == "" && creds.cert != nil:
		// A subject that names no one user claims no one (the cert
		// method then refuses it for its reason).
		name, _ = authcore.CommonName(creds.cert)
	case name == "" && !creds.sent():
		name = cfg.HTTP.DefaultUser
	}
	if db == "" && name != "" {
		db = defaultDatabase(cfg, name)
	}
	addr := clientAddr(r, snap)
	a := &authcore.Attempt{Protocol: hba.ProtoHTTP, Addr: addr, SSL: r.TLS != nil, User: name, Database: db,
		Address: addrText(addr), ClientID: s.nextID.Add(1), Credential: creds.kind(),
		Console: creds.session != nil || creds.staleSession || creds.login, Login: creds.login}
	id, ref, ev := s.gate.Login(r.Context(), snap.Login, a, httpProver{creds})
	s.o.Metrics.AuthAttempt("http", ev.Method, ev.Result, time.Since(start))
	if ref == nil {
		// Proved against snap, the state of the request's start: a
		// reload since (during a slow hash) may have revoked it.
		if ref = authcore.RevokedSince(snap.Login, s.o.State.Current().Login, id.Name, time.Now()); ref != nil {
			ev.Result, ev.Reason = authcore.ResultFailed, ref.Reason
		}
	}
	if ref != nil {
		ev.Log(s.o.Audit)
		return nil, refusalFailure(ref, a, creds)
	}
	if !s.authenticated(r) {
		// Another source's client took its place meanwhile (see limit).
		ev.Result, ev.Reason = authcore.ResultFailed, "closed to make room for another source's client at max_connections"
		ev.Log(s.o.Audit)
		return nil, &authFailure{status: http.StatusServiceUnavailable, code: codeTooManyConnections, msg: "too many connections", reason: ev.Reason}
	}
	ev.Log(s.o.Audit)
	return &authResult{name: id.Name, user: id.User, password: id.Password, method: id.Rule.Method, event: ev}, nil
}

// httpProver hands authcore.Gate the credentials a request carried: the
// HTTP face of the one login gate. It asks the client for nothing.
type httpProver struct{ c *credentials }

var _ authcore.Prover = httpProver{}

func (p httpProver) Offered() authcore.Offer {
	switch {
	case p.c.session != nil:
		return authcore.OfferSession
	case p.c.basic, p.c.inline, p.c.login:
		return authcore.OfferPassword
	case p.c.bearer != "":
		return authcore.OfferToken
	}
	return authcore.OfferNone
}

func (p httpProver) Password(context.Context) (string, error) {
	if p.c.basic || p.c.inline || p.c.login {
		return p.c.password, nil
	}
	return "", authcore.ErrNotOffered
}

func (p httpProver) Token(context.Context) (string, error) {
	if p.c.bearer == "" {
		return "", authcore.ErrNotOffered
	}
	return p.c.bearer, nil
}

// SASL is nil: over HTTP the SCRAM methods take a password.
func (p httpProver) SASL() authcore.SASLExchange { return nil }

func (p httpProver) Certificate() (*x509.Certificate, error) {
	if p.c.cert == nil {
		return nil, certs.ErrNoClientCert
	}
	return p.c.cert, nil
}

func (p httpProver) PeerUser() (string, error) {
	return "", errors.New("peer authentication needs the unix socket")
}

// defaultDatabase is the database of a request that names none:
// http.default_database, else the user name.
func defaultDatabase(cfg *config.Config, user string) string {
	if cfg.HTTP.DefaultDatabase != "" {
		return cfg.HTTP.DefaultDatabase
	}
	return user
}

// cookieChallenge is the WWW-Authenticate value of a refused console
// session or login.
func cookieChallenge(realm string) string {
	return fmt.Sprintf("Cookie realm=%q, form-action=\"/login\"", realm)
}

// clientAddr is the request's client address: the peer, or, when the peer
// is a trusted proxy, the right-most X-Forwarded-For address that is not
// itself a trusted proxy (the left part of the header is whatever the
// client chose to send). A hop that is no address (a proxy that writes
// "unknown", an empty entry) makes the client unknown: the zero Addr,
// which only rules for every address match. It used to stand for the
// nearest trusted proxy, so behind a proxy that writes such hops every
// client was the proxy, and got whatever rules grant the proxy's own
// address.
func clientAddr(r *http.Request, snap *snapshot.Snapshot) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := ap.Addr().Unmap()
	if !snap.TrustedProxy(addr) {
		return addr
	}
	if !forwardsAnAddress(r) {
		return addr // an empty header says no more than none
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		for _, hop := range strings.Split(h, ",") {
			hops = append(hops, strings.TrimSpace(hop))
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := forwardedHop(hops[i])
		if !ok {
			return netip.Addr{}
		}
		addr = a
		if !snap.TrustedProxy(addr) {
			return addr
		}
	}
	return addr
}

// forwardsAnAddress says whether the request's X-Forwarded-For holds
// anything but blanks and commas.
func forwardsAnAddress(r *http.Request) bool {
	for _, h := range r.Header.Values("X-Forwarded-For") {
		if strings.Trim(h, ", \t") != "" {
			return true
		}
	}
	return false
}

// addrText names a client address in the audit log and the throttle; an
// unknown one (see clientAddr) is "unknown".
func addrText(a netip.Addr) string { return hba.AddrText(a, false) }

// forwardedHop reads one X-Forwarded-For entry: an address, also as some
// proxies write it, with a port ("192.0.2.1:4711", "[2001:db8::1]:4711")
// or in brackets ("[2001:db8::1]").
func forwardedHop(hop string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(hop); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(hop); err == nil {
		return ap.Addr().Unmap(), true
	}
	if len(hop) > 2 && hop[0] == '[' && hop[len(hop)-1] == ']' {
		if a, err := netip.ParseAddr(hop[1 : len(hop)-1]); err == nil && a.Is6() {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

package httpfront

import (
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
	session *authcore.Session
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
}

// authFailure is an authentication refusal with its HTTP status and the
// true reason for the audit log.
type authFailure struct {
	status int
	code   string
	msg    string
	scheme challenge
	reason string
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
)

func (e *authFailure) Error() string { return e.reason }

// readCredentials extracts credentials from headers, the TLS session and
// the body's inline credentials. Malformed or doubled credentials are a
// failure, never silently ignored.
func readCredentials(r *http.Request, snap *snapshot.Snapshot, inline *inlineCredentials) (*credentials, *authFailure) {
	c := &credentials{}
	bad := func(why string) *authFailure {
		return &authFailure{status: 0, code: "28000", msg: "invalid authorization", reason: why}
	}
	if q := r.URL.Query(); q.Has("access_token") || q.Has("token") || q.Has("password") {
		// Secrets in URLs end up in logs and browser histories.
		return nil, &authFailure{status: http.StatusBadRequest, code: "28000", msg: "credentials are not accepted in the URL", reason: "credentials in the URL"}
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
			return nil, &authFailure{status: http.StatusBadRequest, code: "28000", msg: "credentials given twice (header and body)", reason: "credentials given twice"}
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

// authenticate proves the request's credentials under the first matching
// HBA rule (SPEC section 4): the claimed user is matched first and proved by
// the rule's method afterwards. Credentials that were sent and fail never
// fall back to the default user.
func (s *Server) authenticate(r *http.Request, snap *snapshot.Snapshot, creds *credentials, db string) (*authResult, *authFailure) {
	start := time.Now()
	cfg := snap.Config
	name := creds.user
	switch {
	case creds.bearer != "":
		name = snap.Tokens.ClaimedUser(creds.bearer)
	case name == "" && creds.cert != nil:
		name = creds.cert.Subject.CommonName
	case name == "" && !creds.sent():
		name = cfg.HTTP.DefaultUser
	}
	addr := clientAddr(r, snap)
	ev := &authcore.AuditEvent{Protocol: "http", ClientID: s.nextID.Add(1), Address: addr.String(), User: name, SSL: r.TLS != nil,
		Credential: creds.kind()}
	throttled := false
	finish := func(res *authResult, f *authFailure) (*authResult, *authFailure) {
		if f == nil {
			ev.Result = authcore.ResultOK
			s.o.Throttle.Success(ev.Address, name)
		} else {
			if ev.Result == "" {
				ev.Result = authcore.ResultFailed
			}
			ev.Reason = f.reason
			if creds.login && !throttled {
				// Every failed console login counts, whatever the
				// reason, so the page cannot tell a refusing rule
				// from a wrong password by how the next one waits.
				s.throttleFailure(snap, ev.Address, name)
			}
		}
		ev.Log(s.o.Audit)
		s.o.Metrics.AuthAttempt("http", ev.Method, ev.Result, time.Since(start))
		return res, f
	}
	// The wait comes before any check (SPEC section 7), and ends when the
	// client leaves (the request's context).
	if creds.sent() {
		t := cfg.Throttle
		if err := s.o.Throttle.Wait(r.Context(), ev.Address, name, t.FailureDelay.Duration, t.MaxDelay.Duration); err != nil {
			throttled = true
			return finish(nil, s.unauthorized(creds, name, "the client left while its attempt waited for the throttle"))
		}
	}
	if name == "" {
		f := s.unauthorized(creds, "", "no credentials and no http.default_user")
		switch {
		case creds.bearer != "":
			f.reason = "bad token: it names no known user"
			s.throttleFailure(snap, ev.Address, "")
			throttled = true
		case creds.staleSession:
			f.reason = "the session cookie names no live session (expired, logged out, or its user changed)"
			f.msg = "the console session ended: log in again"
		case creds.login:
			f.reason = "console login without a user name"
		}
		return finish(nil, f)
	}
	if db == "" {
		db = defaultDatabase(cfg, name)
	}
	ev.Database = db
	req := &hba.Request{Protocol: hba.ProtoHTTP, Addr: addr, SSL: r.TLS != nil, Database: db, User: name}
	if u := snap.Users.Lookup(name); u != nil {
		req.Roles = u.Roles
	}
	rule := snap.Rules.Match(req)
	if rule == nil {
		ev.Result = authcore.ResultNoRule
		return finish(nil, &authFailure{status: http.StatusForbidden, code: "28000",
			msg:    req.NoRuleMessage(),
			reason: "no HBA rule matched"})
	}
	ev.Rule, ev.Method = rule.Number, string(rule.Method)
	if rule.Method == hba.Reject {
		ev.Result = authcore.ResultRejected
		return finish(nil, &authFailure{status: http.StatusForbidden, code: "28000",
			msg:    req.RejectMessage(),
			reason: "rule method is reject"})
	}
	if rule.ClientCert != "" {
		if creds.cert == nil {
			return finish(nil, s.unauthorized(creds, name, "clientcert: no valid client certificate"))
		}
		if rule.ClientCert == "verify-full" && creds.cert.Subject.CommonName != name {
			return finish(nil, s.unauthorized(creds, name, "clientcert: certificate CN is not the user"))
		}
	}
	res := &authResult{name: name, method: rule.Method}
	if (creds.session != nil || creds.login) && !rule.Method.ProvesPassword() {
		// A session stands for a proven password; a rule that asks for
		// something else (or nothing) does not accept one.
		return finish(nil, s.unauthorized(creds, name, fmt.Sprintf("console sessions are accepted only under password or scram-sha-256 rules (rule %d is %s)", rule.Number, rule.Method)))
	}
	var err error
	switch {
	case creds.session != nil:
		// The session was checked against the current users file when
		// its cookie was read; the rule is checked here, per request.
		res.user = snap.Users.Lookup(name)
		if res.user == nil {
			err = authcore.Fail(authcore.ReasonUnknownUser)
		}
	case creds.login && snap.Users.Lookup(name) == nil:
		// A session must be checkable against the users file at every
		// request, and auth_query users have no entry there. The password
		// is still checked, so the refusal costs what a real one does.
		if _, err = snap.Auth.CheckPassword(r.Context(), name, creds.password); err == nil {
			err = authcore.Fail("auth_query user: console logins need a users-file entry")
		}
	default:
		err = s.prove(r, snap, creds, rule, name, res)
	}
	if err != nil {
		f := s.unauthorized(creds, name, authcore.ReasonOf(err))
		if rule.Method == hba.JWT {
			f.scheme = challengeBearer
		}
		if errors.Is(err, authcore.ErrPasswordFailed) {
			s.throttleFailure(snap, ev.Address, name)
			throttled = true
		}
		return finish(nil, f)
	}
	return finish(res, nil)
}

// prove checks the credentials by the rule's method and fills in who they
// proved. A *authcore.Failure is a wrong credential (throttled); any other
// error is a credential of the wrong kind for the rule.
func (s *Server) prove(r *http.Request, snap *snapshot.Snapshot, creds *credentials, rule *hba.Rule, name string, res *authResult) error {
	var err error
	switch rule.Method {
	case hba.Trust:
		// The Basic password, if any, is ignored, as trust means.
		res.user = snap.Users.Lookup(name)
		if res.user != nil {
			err = snap.Auth.CheckUsable(res.user)
		}
	case hba.Password, hba.SCRAM, hba.MD5:
		if !creds.basic && !creds.inline && !creds.login {
			return errors.New("method " + string(rule.Method) + " needs a password (Basic or inline credentials)")
		}
		res.user, err = snap.Auth.CheckPassword(r.Context(), name, creds.password)
		res.password = creds.password
	case hba.Cert:
		switch {
		case creds.cert == nil:
			return errors.New("method cert: no valid client certificate")
		case creds.basic && creds.user != creds.cert.Subject.CommonName:
			return errors.New("method cert: Basic user is not the certificate's CN")
		}
		res.user, err = snap.Auth.CertUser(name, creds.cert.Subject.CommonName)
	case hba.JWT:
		if creds.bearer == "" {
			return errors.New("method jwt needs a bearer token")
		}
		res.user, err = snap.Tokens.Verify(r.Context(), creds.bearer)
		if err == nil && res.user.Name != name {
			err = authcore.Fail(authcore.ReasonBadToken + ": token is for another user")
		}
	default:
		err = fmt.Errorf("method %s is not available over HTTP", rule.Method)
	}
	return err
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

// unauthorized is the one 401 answer: the same body whether or not the
// user exists.
func (s *Server) unauthorized(creds *credentials, name, reason string) *authFailure {
	msg := "authentication failed"
	if name != "" {
		msg = fmt.Sprintf("password authentication failed for user %q", name)
	}
	f := &authFailure{status: http.StatusUnauthorized, code: "28P01", msg: msg, reason: reason}
	switch {
	case creds.bearer != "":
		f.scheme = challengeBearer
	case creds.session != nil || creds.staleSession || creds.login:
		f.scheme = challengeCookie
	}
	return f
}

// throttleFailure records a failed attempt: the pair's next attempt waits
// (SPEC section 7); this one is answered at once.
func (s *Server) throttleFailure(snap *snapshot.Snapshot, addr, user string) {
	t := snap.Config.Throttle
	s.o.Throttle.Failure(addr, user, t.FailureDelay.Duration, t.MaxDelay.Duration)
}

// fail writes an authentication refusal.
func (s *Server) fail(w http.ResponseWriter, snap *snapshot.Snapshot, f *authFailure) {
	status := f.status
	if status == 0 || status == http.StatusUnauthorized {
		status = snap.Config.HTTP.AuthFailureStatus
		switch f.scheme {
		case challengeBearer:
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		case challengeCookie:
			w.Header().Set("WWW-Authenticate", cookieChallenge(snap.Config.HTTP.Realm))
		default:
			w.Header().Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q, charset=\"UTF-8\"", snap.Config.HTTP.Realm))
		}
	}
	writeError(w, status, f.code, f.msg)
}

// clientAddr is the request's client address: the peer, or, when the peer
// is a trusted proxy, the right-most X-Forwarded-For address that is not
// itself a trusted proxy (the left part of the header is whatever the
// client chose to send).
func clientAddr(r *http.Request, snap *snapshot.Snapshot) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := ap.Addr().Unmap()
	if !snap.TrustedProxy(addr) {
		return addr
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return addr // a malformed hop: trust nothing further left
		}
		addr = a.Unmap()
		if !snap.TrustedProxy(addr) {
			return addr
		}
	}
	return addr
}

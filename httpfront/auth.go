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
}

func (c *credentials) sent() bool { return c.basic || c.bearer != "" || c.inline }

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
	bearer bool // answer WWW-Authenticate: Bearer rather than Basic
	reason string
}

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
				f.bearer = true
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
	ev := &authcore.AuditEvent{Protocol: "http", ClientID: s.nextID.Add(1), Address: addr.String(), User: name, SSL: r.TLS != nil}
	finish := func(res *authResult, f *authFailure) (*authResult, *authFailure) {
		if f == nil {
			ev.Result = authcore.ResultOK
			s.o.Throttle.Success(ev.Address, name)
		} else {
			if ev.Result == "" {
				ev.Result = authcore.ResultFailed
			}
			ev.Reason = f.reason
		}
		ev.Log(s.o.Audit)
		s.o.Metrics.AuthAttempt("http", ev.Method, ev.Result, time.Since(start))
		return res, f
	}
	if name == "" {
		f := s.unauthorized(creds, "", "no credentials and no http.default_user")
		if creds.bearer != "" {
			f.reason = "bad token: it names no known user"
			s.throttleWait(r, snap, ev.Address, "")
		}
		return finish(nil, f)
	}
	if db == "" {
		db = cfg.HTTP.DefaultDatabase
	}
	if db == "" {
		db = name
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
	var err error
	switch rule.Method {
	case hba.Trust:
		// The Basic password, if any, is ignored, as trust means.
		res.user = snap.Users.Lookup(name)
		if res.user != nil {
			err = snap.Auth.CheckUsable(res.user)
		}
	case hba.Password, hba.SCRAM, hba.MD5:
		if !creds.basic && !creds.inline {
			return finish(nil, s.unauthorized(creds, name, "method "+string(rule.Method)+" needs a password (Basic or inline credentials)"))
		}
		res.user, err = snap.Auth.CheckPassword(r.Context(), name, creds.password)
		res.password = creds.password
	case hba.Cert:
		switch {
		case creds.cert == nil:
			return finish(nil, s.unauthorized(creds, name, "method cert: no valid client certificate"))
		case creds.basic && creds.user != creds.cert.Subject.CommonName:
			return finish(nil, s.unauthorized(creds, name, "method cert: Basic user is not the certificate's CN"))
		}
		res.user, err = snap.Auth.CertUser(name, creds.cert.Subject.CommonName)
	case hba.JWT:
		if creds.bearer == "" {
			f := s.unauthorized(creds, name, "method jwt needs a bearer token")
			f.bearer = true
			return finish(nil, f)
		}
		res.user, err = snap.Tokens.Verify(r.Context(), creds.bearer)
		if err == nil && res.user.Name != name {
			err = authcore.Fail(authcore.ReasonBadToken + ": token is for another user")
		}
	default:
		err = fmt.Errorf("method %s is not available over HTTP", rule.Method)
	}
	if err != nil {
		f := s.unauthorized(creds, name, authcore.ReasonOf(err))
		f.bearer = rule.Method == hba.JWT
		if errors.Is(err, authcore.ErrPasswordFailed) {
			s.throttleWait(r, snap, ev.Address, name)
		}
		return finish(nil, f)
	}
	return finish(res, nil)
}

// unauthorized is the one 401 answer: the same body whether or not the
// user exists.
func (s *Server) unauthorized(creds *credentials, name, reason string) *authFailure {
	msg := "authentication failed"
	if name != "" {
		msg = fmt.Sprintf("password authentication failed for user %q", name)
	}
	return &authFailure{status: http.StatusUnauthorized, code: "28P01", msg: msg, bearer: creds.bearer != "", reason: reason}
}

// throttleWait delays a failed answer per SPEC section 7, in the request's
// own goroutine.
func (s *Server) throttleWait(r *http.Request, snap *snapshot.Snapshot, addr, user string) {
	t := snap.Config.Throttle
	d := s.o.Throttle.Failure(addr, user, t.FailureDelay.Duration, t.MaxDelay.Duration)
	authcore.Sleep(r.Context(), d)
}

// fail writes an authentication refusal.
func (s *Server) fail(w http.ResponseWriter, snap *snapshot.Snapshot, f *authFailure) {
	status := f.status
	if status == 0 || status == http.StatusUnauthorized {
		status = snap.Config.HTTP.AuthFailureStatus
		if f.bearer {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		} else {
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

package httpfront

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/pgwarden/pgwarden/internal/ascii"
	"github.com/pgwarden/pgwarden/snapshot"
)

// Cookie names. Over HTTPS the session cookie carries the __Host- prefix, so
// a browser takes it only with Secure, Path=/ and no Domain: no other host,
// subdomain or plain-HTTP page can plant or overwrite it.
const (
	sessionCookieTLS   = "__Host-pgwarden"
	sessionCookiePlain = "pgwarden_session"
	loginCookieTLS     = "__Host-pgwarden_login"
	loginCookiePlain   = "pgwarden_login"
)

// csrfHeader carries the session's CSRF token on cookie-authenticated
// /_sql calls. A custom header cannot be sent cross-origin without a CORS
// preflight, which pgwarden never approves.
const csrfHeader = "X-CSRF-Token"

// transport is how a request reached pgwarden, as far as the console cares.
type transport struct {
	secure bool // HTTPS, or HTTPS at a trusted proxy in front of pgwarden
}

func (t transport) sessionCookie() string {
	if t.secure {
		return sessionCookieTLS
	}
	return sessionCookiePlain
}

func (t transport) loginCookie() string {
	if t.secure {
		return loginCookieTLS
	}
	return loginCookiePlain
}

func (t transport) scheme() string {
	if t.secure {
		return "https"
	}
	return "http"
}

// errPlainHTTP refuses the console over plain HTTP from off the machine:
// passwords and session cookies would cross the network in clear.
var errPlainHTTP = errors.New("the web console is served over HTTPS (server.http_tls), or over plain HTTP on loopback only")

// consoleTransport says whether the console may serve r, and how. A request
// relayed by a trusted proxy (server.trusted_proxies) counts as HTTPS when
// the proxy says so in X-Forwarded-Proto: a TLS-terminating proxy in front
// of pgwarden is the usual way to publish it.
func consoleTransport(r *http.Request, snap *snapshot.Snapshot) (transport, error) {
	if r.TLS != nil {
		return transport{secure: true}, nil
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return transport{}, errPlainHTTP
	}
	peer := ap.Addr().Unmap()
	forwarded := r.Header.Get("X-Forwarded-Proto") != "" || len(r.Header.Values("X-Forwarded-For")) > 0
	if snap.TrustedProxy(peer) && forwarded {
		// The proxy speaks for the client: the scheme and the address
		// that count are the ones it forwards, not its own loopback.
		if ascii.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
			return transport{secure: true}, nil
		}
		// Plain HTTP only for a client the proxy names, on loopback: a
		// proxy that forwards the scheme but names no client may be
		// forwarding anyone's.
		if forwardsAnAddress(r) && clientAddr(r, snap).IsLoopback() {
			return transport{}, nil
		}
		return transport{}, errPlainHTTP
	}
	if peer.IsLoopback() {
		return transport{}, nil
	}
	return transport{}, errPlainHTTP
}

// setCookie sets an HttpOnly, SameSite=Strict, Path=/ cookie, Secure over
// HTTPS. It lives as long as the browser session: the server enforces the
// session's own timeouts.
func setCookie(w http.ResponseWriter, t transport, name, value string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", Secure: t.secure, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func clearCookie(w http.ResponseWriter, t transport, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: t.secure, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// cookieValues are the values of every cookie named name, in the order the
// browser sent them. A page on another port of the same loopback host can
// add a cookie of the same name with a longer path; taking the first that
// names a live session keeps such a cookie from shadowing the real one.
func cookieValues(r *http.Request, name string) []string {
	var out []string
	for _, c := range r.CookiesNamed(name) {
		out = append(out, c.Value)
	}
	return out
}

// sessionLimits are the configured session timeouts; the idle one never
// exceeds the absolute one.
func sessionLimits(snap *snapshot.Snapshot) SessionLimits {
	h := snap.Config.HTTP
	return SessionLimits{Idle: min(h.SessionIdleTimeout.Duration, h.SessionTTL.Duration), Absolute: h.SessionTTL.Duration}
}

// currentSession finds the live session r's cookie names, checking that
// its user still holds it under snap (a password change, disabling or
// removal by any path ends it here). cookieSent tells whether r carried a
// session cookie at all.
func (s *Server) currentSession(r *http.Request, snap *snapshot.Snapshot, t transport) (id string, sess Session, ok, cookieSent bool) {
	now := time.Now()
	for _, v := range cookieValues(r, t.sessionCookie()) {
		cookieSent = true
		sess, ok := s.sessions.Get(v, sessionLimits(snap), now)
		if !ok {
			continue
		}
		if !sess.HeldBy(snap.Users.Lookup(sess.User), now) {
			s.sessions.Delete(v)
			continue
		}
		return v, sess, true, true
	}
	return "", Session{}, false, cookieSent
}

// loginToken is the CSRF token of the forms shown before login (login,
// setup): an HMAC of the browser's login cookie under a key of this
// process, so the server keeps no state for visitors who have not logged in.
func (s *Server) loginToken(purpose, nonce string) string {
	m := hmac.New(sha256.New, s.formKey)
	m.Write([]byte(purpose + "\x00" + nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// loginNonce returns the browser's login cookie, setting a new one when it
// has none.
func (s *Server) loginNonce(w http.ResponseWriter, r *http.Request, t transport) string {
	if c, err := r.Cookie(t.loginCookie()); err == nil && WellFormedSessionID(c.Value) {
		return c.Value
	}
	nonce := NewOpaqueID()
	setCookie(w, t, t.loginCookie(), nonce)
	return nonce
}

// checkLoginToken verifies the CSRF token of a pre-login form against the
// browser's login cookie.
func (s *Server) checkLoginToken(r *http.Request, t transport, purpose, token string) bool {
	c, err := r.Cookie(t.loginCookie())
	if err != nil || !WellFormedSessionID(c.Value) || token == "" {
		return false
	}
	want := s.loginToken(purpose, c.Value)
	return subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1
}

// errCrossSite is a request that did not come from the console's own pages.
var errCrossSite = errors.New("cross-site request refused")

// checkSameOrigin refuses a state-changing request that a page of another
// origin could have sent: its Origin (or, lacking one, its Referer) must be
// this server's own origin, and Sec-Fetch-Site, when the browser sends it,
// must say same-origin. Browsers send Origin on every POST; a request with
// neither header is refused too.
func checkSameOrigin(r *http.Request, t transport) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return errCrossSite
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		ref, err := url.Parse(r.Referer())
		if err != nil || ref.Host == "" {
			return errCrossSite
		}
		origin = ref.Scheme + "://" + ref.Host
	}
	if !ascii.EqualFold(origin, t.scheme()+"://"+r.Host) {
		return errCrossSite
	}
	return nil
}

// errNotForm is a console POST whose body is not an HTML form. Only
// application/x-www-form-urlencoded is accepted, uncompressed: text/plain
// and multipart are what cross-site pages send to dodge checks that
// expect a form.
var errNotForm = errors.New("the body must be application/x-www-form-urlencoded")

// maxFormBytes bounds a console form body.
const maxFormBytes = 16 << 10

// readForm parses a console form body.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, errNotForm
	}
	if bodyCoding(r) != "" {
		w.Header().Set("Accept-Encoding", "identity")
		return nil, errNotForm
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return nil, err
	}
	// A browser sends each field of these forms once; a form that names
	// one twice says two things (pgwarden would read the first, a proxy
	// or log may read the last), as a JSON body with a key twice does.
	for k, v := range r.PostForm {
		if len(v) > 1 {
			return nil, fmt.Errorf("the form names %q more than once", k)
		}
	}
	return r.PostForm, nil
}

package httpfront

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/hba"
	"github.com/pgwarden/pgwarden/snapshot"
)

// The console's pages, script and style are compiled into the binary: it
// works offline and loads nothing from elsewhere.
//
//go:embed console
var consoleFiles embed.FS

var consoleTemplates = template.Must(template.ParseFS(consoleFiles, "console/*.html"))

// assets serves the script and style sheet at /assets/.
var assets = func() http.Handler {
	sub, err := fs.Sub(consoleFiles, "console/assets")
	if err != nil {
		panic(err)
	}
	return http.StripPrefix("/assets/", http.FileServerFS(sub))
}()

// Bounds of the session store: at most this many sessions, and per user.
const (
	maxSessions        = 10000
	maxSessionsPerUser = 32
)

// page is what a console template renders.
type page struct {
	View      string // login | console | setup | message
	Title     string
	User      string // the logged-in user, for the header and log out
	CSRF      string // the token of every form on the page
	Notice    string
	Error     string
	FormUser  string // the user name typed into the login or setup form
	Database  string
	Databases []string
	MinLength int
	// PasswordError is the change-password form's error; the form opens
	// when it is set.
	PasswordError string
	SetupToken    string
	Message       string
}

// notices are the messages a redirect to / may ask for: a fixed set, so no
// text from the URL reaches the page.
var notices = map[string]string{
	"logged-out":       "You are logged out.",
	"password-changed": "Your password was changed and all your sessions ended. Log in with the new password.",
	"setup-done":       "The administrator was created. Log in with it.",
	"session-ended":    "Your session ended. Log in again.",
}

// The one answer to every failed login, whatever the true reason (which
// goes to the audit log).
const loginFailed = "Login failed: the user name or password is wrong, or this account may not log in here."

// render writes a console page with the headers every console answer
// carries: no inline script or style may run, no other site may frame it,
// nothing is cached.
func render(w http.ResponseWriter, status int, p *page) {
	var buf bytes.Buffer
	if err := consoleTemplates.ExecuteTemplate(&buf, "page", p); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: with no-referrer, browsers send
	// "Origin: null" on form posts, which the origin check refuses.
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func renderMessage(w http.ResponseWriter, status int, title, msg string) {
	render(w, status, &page{View: "message", Title: title, Message: msg})
}

// console wraps a console handler: 404 while http.console is off, and a
// refusal over plain HTTP from off the machine.
func (s *Server) console(h func(http.ResponseWriter, *http.Request, *snapshot.Snapshot, transport)) http.HandlerFunc {
	return s.limit(func(w http.ResponseWriter, r *http.Request) {
		snap := s.o.State.Current()
		if !snap.Config.HTTP.Console {
			http.NotFound(w, r)
			return
		}
		t, err := consoleTransport(r, snap)
		if err != nil {
			renderMessage(w, http.StatusForbidden, "HTTPS needed", err.Error()+".")
			return
		}
		h(w, r, snap, t)
	})
}

// checkForm reads a console form posted from the console's own pages. On
// failure it has answered: 415 for a body that is not a form, 403 for a
// cross-site post.
func checkForm(w http.ResponseWriter, r *http.Request, t transport) (map[string][]string, bool) {
	form, err := readForm(w, r)
	if errors.Is(err, errNotForm) {
		renderMessage(w, http.StatusUnsupportedMediaType, "Not a form", "The request was not an HTML form post.")
		return nil, false
	}
	if err != nil {
		renderMessage(w, http.StatusBadRequest, "Bad form", "The form could not be read.")
		return nil, false
	}
	if checkSameOrigin(r, t) != nil {
		refuseForm(w)
		return nil, false
	}
	return form, true
}

func refuseForm(w http.ResponseWriter) {
	renderMessage(w, http.StatusForbidden, "Form refused",
		"The form was refused: it came from another site, or its security token is missing or out of date. Go back to the console, reload the page and try again.")
}

func formValue(form map[string][]string, key string) string {
	if v := form[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// handleConsole serves GET /: the SQL console to a logged-in user, else the
// login form. It never runs SQL, whatever its query string says.
func (s *Server) handleConsole(w http.ResponseWriter, r *http.Request, snap *snapshot.Snapshot, t transport) {
	_, sess, ok, stale := s.currentSession(r, snap, t)
	if ok {
		s.renderConsole(w, r, http.StatusOK, snap, sess, "")
		return
	}
	p := &page{View: "login", Title: "Log in", Notice: notices[r.URL.Query().Get("notice")]}
	if stale {
		clearCookie(w, t, t.sessionCookie())
		if p.Notice == "" {
			p.Notice = notices["session-ended"]
		}
	}
	p.CSRF = s.loginToken("login", s.loginNonce(w, r, t))
	render(w, http.StatusOK, p)
}

func (s *Server) renderConsole(w http.ResponseWriter, r *http.Request, status int, snap *snapshot.Snapshot, sess Session, passwordErr string) {
	db := defaultDatabase(snap.Config, sess.User)
	render(w, status, &page{View: "console", Title: "SQL", User: sess.User, CSRF: sess.CSRF, Database: db,
		Databases: s.consoleDatabases(r, snap, sess.User, db),
		MinLength: snap.Config.Users.PasswordMinLength, PasswordError: passwordErr})
}

// consoleDatabases are the databases the database field offers: the
// default one, the [[databases]] names, and those the backend lets the
// user's backend role connect to (not an entry's backend database by its
// own name, which Route refuses), each kept only when the HBA rules let
// this user's console session in (authcore.SessionAdmits). The backend's
// list costs one query per page; when it fails the configured names stay.
func (s *Server) consoleDatabases(r *http.Request, snap *snapshot.Snapshot, user, def string) []string {
	cands := []string{def}
	for _, d := range snap.Config.Databases {
		cands = append(cands, d.Name)
	}
	cands = append(cands, s.backendDatabases(r, snap, user, def)...)
	a := &authcore.Attempt{Protocol: hba.ProtoHTTP, Addr: clientAddr(r, snap), SSL: r.TLS != nil, User: user}
	hasCert := r.TLS != nil && len(r.TLS.PeerCertificates) > 0
	var out []string
	for _, d := range cands {
		if slices.Contains(out, d) {
			continue
		}
		if _, err := backend.Route(snap.Config, user, nil, backend.Credentials{}, d); err != nil {
			continue // a routed backend database's own name, say: refused by name
		}
		a.Database = d
		if authcore.SessionAdmits(snap.Login, a, hasCert) {
			out = append(out, d)
		}
	}
	return out
}

// backendDatabases asks the backend, as the user's backend role, which
// databases that role may connect to.
func (s *Server) backendDatabases(r *http.Request, snap *snapshot.Snapshot, user, db string) []string {
	u := snap.Users.Lookup(user)
	if u == nil {
		return nil
	}
	t, err := backend.Route(snap.Config, user, u, backend.Credentials{}, db)
	if err != nil {
		return nil
	}
	pool, err := s.pools.Get(snap.Config, t)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	rows, err := pool.Query(ctx, `SELECT datname FROM pg_database
		WHERE datallowconn AND NOT datistemplate AND has_database_privilege(datname, 'CONNECT') ORDER BY datname`)
	if err != nil {
		s.o.Log.Debug("console: the backend's database list is unavailable", zap.String("user", user), zap.Error(err))
		return nil
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil
	}
	return names
}

// handleLogin serves POST /login. Success starts a new session under a new
// id: whatever session cookie the browser held before (its own or one
// planted on it) is ended, never promoted.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request, snap *snapshot.Snapshot, t transport) {
	form, ok := checkForm(w, r, t)
	if !ok {
		return
	}
	if !s.checkLoginToken(r, t, "login", formValue(form, "csrf")) {
		refuseForm(w)
		return
	}
	name := formValue(form, "user")
	creds := &credentials{login: true, user: name, password: formValue(form, "password")}
	res, f := s.authenticate(r, snap, creds, "")
	if f != nil {
		w.Header().Set("WWW-Authenticate", cookieChallenge(snap.Config.HTTP.Realm))
		render(w, http.StatusUnauthorized, &page{View: "login", Title: "Log in", Error: loginFailed, FormUser: name,
			CSRF: s.loginToken("login", s.loginNonce(w, r, t))})
		return
	}
	for _, old := range cookieValues(r, t.sessionCookie()) {
		s.sessions.Delete(old)
	}
	id, _ := s.sessions.Create(res.user, time.Now())
	// The login cookie stays: it is no credential, and a login form still
	// open in another tab keeps working with it.
	setCookie(w, t, t.sessionCookie(), id)
	s.o.Log.Info("console session started", zap.String("user", res.name), zap.String("address", addrText(clientAddr(r, snap))))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// handleLogout serves POST /logout: the session is deleted server side, so
// its cookie is worthless even if a copy survives.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request, snap *snapshot.Snapshot, t transport) {
	form, ok := checkForm(w, r, t)
	if !ok {
		return
	}
	id, sess, ok, _ := s.currentSession(r, snap, t)
	if ok {
		if !sess.CheckCSRF(formValue(form, "csrf")) {
			refuseForm(w)
			return
		}
		s.sessions.Delete(id)
		s.o.Log.Info("console session ended by logout", zap.String("user", sess.User))
	}
	clearCookie(w, t, t.sessionCookie())
	http.Redirect(w, r, "/?notice=logged-out", http.StatusSeeOther)
}

// handlePassword serves POST /password: the logged-in user changes their
// own password. The current one is required and the password policy
// applies. Like ALTER USER, the change rotates the user's token secret and
// ends all their sessions, this one included, and their wire sessions.
func (s *Server) handlePassword(w http.ResponseWriter, r *http.Request, snap *snapshot.Snapshot, t transport) {
	form, ok := checkForm(w, r, t)
	if !ok {
		return
	}
	_, sess, ok, _ := s.currentSession(r, snap, t)
	if !ok {
		http.Redirect(w, r, "/?notice=session-ended", http.StatusSeeOther)
		return
	}
	if !sess.CheckCSRF(formValue(form, "csrf")) {
		refuseForm(w)
		return
	}
	current, next := formValue(form, "current_password"), formValue(form, "new_password")
	addr := addrText(clientAddr(r, snap))
	th := snap.Config.Throttle
	done, err := s.o.Throttle.Wait(r.Context(), addr, sess.User, th.FailureDelay.Duration, th.MaxDelay.Duration)
	if err != nil {
		return // the client left while it waited
	}
	defer done()
	// The wait may have been long: judge the request by the users in
	// force now (a reset meanwhile ended this session).
	snap = s.o.State.Current()
	if _, sess, ok, _ = s.currentSession(r, snap, t); !ok {
		http.Redirect(w, r, "/?notice=session-ended", http.StatusSeeOther)
		return
	}
	proven, err := snap.Auth.CheckPassword(authcore.WithSource(r.Context(), s.o.Throttle.Source(addr)), sess.User, current)
	if err != nil {
		s.o.Audit.Warn("password change refused", zap.String("user", sess.User), zap.String("address", addr), zap.String("reason", authcore.ReasonOf(err)))
		s.o.Throttle.Failure(addr, sess.User, th.FailureDelay.Duration, th.MaxDelay.Duration)
		s.renderConsole(w, r, http.StatusBadRequest, snap, sess, "The current password is wrong.")
		return
	}
	if next != formValue(form, "new_password2") {
		s.renderConsole(w, r, http.StatusBadRequest, snap, sess, "The new passwords do not match.")
		return
	}
	hash, err := authcore.HashNewPassword(authcore.AlgoSCRAM, next, snap.Config.Users.PasswordMinLength)
	if err != nil {
		s.renderConsole(w, r, http.StatusBadRequest, snap, sess, "The new password is refused: "+err.Error()+".")
		return
	}
	_, err = s.o.State.UpdateUsers(authcore.PasswordChangeFrom(sess.User, proven.Password, hash))
	if errors.Is(err, authcore.ErrPasswordChangedMeanwhile) || errors.Is(err, authcore.ErrNoSuchUser) {
		s.o.Audit.Warn("password change refused", zap.String("user", sess.User), zap.String("address", addr), zap.String("reason", err.Error()))
		http.Redirect(w, r, "/?notice=session-ended", http.StatusSeeOther)
		return
	}
	if err != nil {
		s.o.Log.Error("console password change failed", zap.String("user", sess.User), zap.Error(err))
		s.renderConsole(w, r, http.StatusInternalServerError, snap, sess, "The password could not be changed; the server log says why.")
		return
	}
	n := s.sessions.EndUser(sess.User)
	if s.o.EndWireSessions != nil {
		s.o.EndWireSessions(sess.User)
	}
	s.o.Log.Info("password changed in the console", zap.String("user", sess.User), zap.Int("sessions_ended", n))
	clearCookie(w, t, t.sessionCookie())
	http.Redirect(w, r, "/?notice=password-changed", http.StatusSeeOther)
}

// sessionCredentials makes r's session cookie its credential when r sent
// no other (an Authorization header or inline credentials win, and the
// cookie is then ignored). A cookie-authenticated call must come from the
// console's own page: the same origin, and the session's CSRF token in the
// X-CSRF-Token header. A cookie naming no live session is a failed
// credential: it never falls back to http.default_user.
func (s *Server) sessionCredentials(r *http.Request, snap *snapshot.Snapshot, creds *credentials) *authFailure {
	if creds.sent() || !snap.Config.HTTP.Console {
		return nil
	}
	t, err := consoleTransport(r, snap)
	if err != nil {
		return nil // no session cookie is ever issued here
	}
	_, sess, ok, sent := s.currentSession(r, snap, t)
	switch {
	case !sent:
		return nil
	case !ok:
		creds.staleSession = true
		return nil
	}
	if checkSameOrigin(r, t) != nil || !sess.CheckCSRF(r.Header.Get(csrfHeader)) {
		s.o.Log.Warn("refused a session-cookie request without the console's origin and CSRF token",
			zap.String("user", sess.User), zap.String("address", addrText(clientAddr(r, snap))), zap.String("path", r.URL.Path))
		return &authFailure{status: http.StatusForbidden, code: codeInvalidAuthorization,
			msg: "cross-site request refused: a console session needs the console's origin and CSRF token"}
	}
	creds.session = &sess
	creds.user = sess.User
	return nil
}

package httpfront

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"unicode"

	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/snapshot"
)

// startSetup makes the one-time setup token when the users file holds no
// admin, and logs where to use it. Without the console there is no page to
// use it on, so the log says how to make an admin from the shell instead.
func (s *Server) startSetup() {
	snap := s.o.State.Current()
	if snap.Users.AnyWithRole("admin") {
		return
	}
	if !snap.Config.HTTP.Console || len(s.listeners) == 0 {
		s.o.Log.Warn("no user holds role admin; create one with `pgwarden user add NAME --admin`")
		return
	}
	s.setup = NewSetupToken()
	if s.o.SetupToken != "" {
		// Shared through the store: the link works on any instance.
		s.setup = &SetupToken{token: s.o.SetupToken}
	}
	// The token is logged on purpose, once: the log is where only the
	// operator looks. It is spent by the first admin created.
	s.o.Log.Warn("no user holds role admin: open the setup page to create the first one (the link works once)",
		zap.String("setup_url", s.setupURL(snap)))
}

func (s *Server) setupURL(snap *snapshot.Snapshot) string {
	scheme := "http"
	if snap.Config.Server.HTTPTLS {
		scheme = "https"
	}
	host, port, _ := net.SplitHostPort(s.listeners[0].Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return fmt.Sprintf("%s://%s/setup?token=%s", scheme, net.JoinHostPort(host, port), s.setup.Value())
}

// setupOpen reports whether the setup page still serves: a token is
// pending and no admin exists.
func (s *Server) setupOpen(snap *snapshot.Snapshot) bool {
	if !s.setup.Pending() {
		return false
	}
	if snap.Users.AnyWithRole("admin") {
		s.spendSetup()
		return false
	}
	return true
}

// spendSetup spends the setup token, and a shared one with it.
func (s *Server) spendSetup() {
	if s.setup.Spend() && s.o.SetupSpent != nil {
		s.o.SetupSpent()
	}
}

// UsersChanged takes in users that reached the server by a reload (the CLI,
// another instance): once any of them is an admin, the setup token is
// spent. Spent only when /setup was next asked for, a token that saw an
// admin come and go (made with the CLI, then removed) opened setup again.
func (s *Server) UsersChanged(next *snapshot.Snapshot) {
	if s.setup.Pending() && next.Users.AnyWithRole("admin") {
		s.spendSetup()
	}
}

// handleSetupPage serves GET /setup?token=...: the form that creates the
// first admin. Once an admin exists, /setup answers 404.
func (s *Server) handleSetupPage(w http.ResponseWriter, r *http.Request, snap *snapshot.Snapshot, t transport) {
	if !s.setupOpen(snap) {
		http.NotFound(w, r)
		return
	}
	token := r.URL.Query().Get("token")
	if !s.setup.Check(token) {
		renderMessage(w, http.StatusForbidden, "Setup link not valid",
			"This setup link is not valid. The working link is in pgwarden's log, written when it started.")
		return
	}
	render(w, http.StatusOK, &page{View: "setup", Title: "Create the first administrator", SetupToken: token,
		MinLength: snap.Config.Users.PasswordMinLength, CSRF: s.loginToken("setup", s.loginNonce(w, r, t))})
}

// handleSetup serves POST /setup: with the token, the first visitor creates
// an admin. The users file is checked again under its lock, so of two
// racing visitors only one creates an admin.
func (s *Server) handleSetup(w http.ResponseWriter, r *http.Request, snap *snapshot.Snapshot, t transport) {
	if !s.setupOpen(snap) {
		http.NotFound(w, r)
		return
	}
	form, ok := checkForm(w, r, t)
	if !ok {
		return
	}
	token := formValue(form, "token")
	if !s.checkLoginToken(r, t, "setup", formValue(form, "csrf")) {
		refuseForm(w)
		return
	}
	if !s.setup.Check(token) {
		if !s.setup.Pending() {
			// Another visitor made the admin since this request began
			// (and spent the token): setup is over, as for a visitor
			// who comes after it (404), not a refused form.
			http.NotFound(w, r)
			return
		}
		refuseForm(w)
		return
	}
	name, pw := strings.TrimSpace(formValue(form, "user")), formValue(form, "password")
	again := func(msg string) {
		render(w, http.StatusBadRequest, &page{View: "setup", Title: "Create the first administrator", SetupToken: token, Error: msg,
			FormUser: name, MinLength: snap.Config.Users.PasswordMinLength, CSRF: s.loginToken("setup", s.loginNonce(w, r, t))})
	}
	if err := checkUserName(name); err != nil {
		again(err.Error())
		return
	}
	if pw != formValue(form, "password2") {
		again("The passwords do not match.")
		return
	}
	hash, err := authcore.HashNewPassword(authcore.AlgoSCRAM, pw, snap.Config.Users.PasswordMinLength)
	if err != nil {
		again("The password is refused: " + err.Error() + ".")
		return
	}
	errTaken := fmt.Errorf("A user named %q exists already; choose another name.", name)
	errDone := errors.New("an admin exists already")
	_, err = s.o.State.UpdateUsers(func(list []*authcore.User) ([]*authcore.User, error) {
		for _, u := range list {
			if u.HasRole("admin") {
				return nil, errDone
			}
			if u.Name == name {
				return nil, errTaken
			}
		}
		return append(list, &authcore.User{Name: name, Password: hash, Roles: []string{"admin"}}), nil
	})
	switch {
	case errors.Is(err, errTaken):
		again(err.Error())
		return
	case errors.Is(err, errDone):
		s.spendSetup()
		http.NotFound(w, r)
		return
	case err != nil:
		s.o.Log.Error("setup could not write the users file", zap.Error(err))
		renderMessage(w, http.StatusInternalServerError, "Setup failed", "The administrator could not be stored; the server log says why.")
		return
	}
	s.spendSetup()
	s.o.Log.Info("first admin created on the setup page", zap.String("user", name), zap.String("address", addrText(clientAddr(r, snap))))
	http.Redirect(w, r, "/?notice=setup-done", http.StatusSeeOther)
}

// checkUserName refuses names PostgreSQL could not hold as a role (at most
// 63 bytes) and names with control characters, which would make log lines
// and psql tables lie.
func checkUserName(name string) error {
	switch {
	case name == "":
		return errors.New("The user name is empty.")
	case len(name) > 63:
		return errors.New("The user name is longer than 63 bytes, PostgreSQL's limit for role names.")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return errors.New("The user name holds control characters.")
	}
	return nil
}

package httpfront

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/snapshot"
)

// handleToken issues a token to a password-authenticated user:
// {"token": "...", "expires_at": "RFC3339"}. An optional JSON body
// {"expire": "30d"} asks for a shorter or longer life, up to tokens.max_ttl.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	snap := s.o.State.Current()
	var body struct {
		Expire string `json:"expire"`
	}
	if r.ContentLength != 0 {
		if e := decodeBody(w, r, 4096, &body, nil, 0); e != nil {
			writeError(w, e.status, e.code, e.msg)
			return
		}
	}
	creds, f := readCredentials(r, snap, nil)
	if f != nil {
		s.fail(w, snap, f)
		return
	}
	if !creds.basic {
		s.fail(w, snap, &authFailure{status: http.StatusUnauthorized, code: codeInvalidPassword, msg: "POST /_token needs Basic credentials", reason: "no Basic credentials for /_token"})
		return
	}
	db, e := queryDatabase(r)
	if e != nil {
		writeError(w, e.status, e.code, e.msg)
		return
	}
	res, f := s.authenticate(r, snap, creds, db)
	if f != nil {
		s.fail(w, snap, f)
		return
	}
	if !res.method.ProvesPassword() {
		writeError(w, http.StatusForbidden, codeInvalidAuthorization, "tokens are issued only under a password rule")
		return
	}
	if res.user == nil {
		writeError(w, http.StatusForbidden, codeInvalidAuthorization, "tokens are issued only to users of the users file")
		return
	}
	user := res.user
	if user.Secret == "" {
		// The secret is made on the first token (SPEC section 3),
		// through the locked, atomic users-file writer; a reload then
		// makes it count for verification.
		u, err := s.createSecret(snap, user.Name)
		if err != nil {
			s.internalError(w, r, "could not store a token secret for "+user.Name, err)
			return
		}
		user = u
	}
	// authenticate found the password still in force after checking it;
	// a change since (while the secret was made) must not leave the
	// client a token either, least of all one signed with a secret made
	// after the change.
	if ref := authcore.RevokedSince(snap.Login, s.o.State.Current().Login, user.Name, time.Now()); ref != nil {
		s.o.Audit.Warn("token refused", zap.String("user", user.Name), zap.String("address", addrText(clientAddr(r, snap))),
			zap.String("reason", ref.Reason))
		s.fail(w, snap, &authFailure{status: http.StatusUnauthorized, code: codeInvalidPassword,
			msg: fmt.Sprintf("password authentication failed for user %q", user.Name), reason: "the login was revoked by a reload during the login"})
		return
	}
	ttl, err := authcore.ParseTokenLifetime(body.Expire)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeInvalidParameterValue, err.Error())
		return
	}
	tok, exp, err := authcore.IssueToken(snap.Config.Tokens, user, ttl, time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, codeInvalidParameterValue, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok, "expires_at": exp.UTC().Format(time.RFC3339)})
}

// createSecret stores a new secret for name and reloads, returning the
// user as the new snapshot has it.
func (s *Server) createSecret(snap *snapshot.Snapshot, name string) (*authcore.User, error) {
	next, err := s.o.State.UpdateUsers(func(list []*authcore.User) ([]*authcore.User, error) {
		for _, u := range list {
			if u.Name == name && u.Secret == "" {
				u.Secret = authcore.NewSecret()
			}
		}
		return list, nil
	})
	if err != nil {
		return nil, err
	}
	u := next.Users.Lookup(name)
	if u == nil || u.Secret == "" {
		return nil, errors.New("the user vanished from the users file")
	}
	return u, nil
}

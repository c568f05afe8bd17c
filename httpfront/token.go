package httpfront

import (
	"net/http"
	"time"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/hba"
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
		if e := decodeBody(w, r, 4096, &body); e != nil {
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
		s.fail(w, snap, &authFailure{status: http.StatusUnauthorized, code: "28P01", msg: "POST /_token needs Basic credentials", reason: "no Basic credentials for /_token"})
		return
	}
	res, f := s.authenticate(r, snap, creds, r.URL.Query().Get("db"))
	if f != nil {
		s.fail(w, snap, f)
		return
	}
	switch res.method {
	case hba.Password, hba.SCRAM, hba.MD5:
	default:
		writeError(w, http.StatusForbidden, "28000", "tokens are issued only under a password rule")
		return
	}
	if res.user == nil || res.user.Secret == "" {
		writeError(w, http.StatusConflict, "55000", "the user has no token secret yet: create one with `pgwarden token create`")
		return
	}
	var ttl time.Duration
	if body.Expire != "" {
		d, err := config.ParseDuration(body.Expire)
		if err != nil {
			writeError(w, http.StatusBadRequest, "22023", err.Error())
			return
		}
		ttl = d
	}
	tok, exp, err := authcore.IssueToken(snap.Config.Tokens, res.user, ttl, time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, "22023", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok, "expires_at": exp.UTC().Format(time.RFC3339)})
}

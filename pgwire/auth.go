package pgwire

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/hba"
	"github.com/pgwarden/pgwarden/snapshot"
)

// authResult is who the client proved to be.
type authResult struct {
	// user is the users-file entry; nil for a trusted name that has none.
	user   *authcore.User
	name   string
	method hba.Method
	// password is the client's cleartext password, kept only for
	// [backend] passthrough.
	password string
}

// authenticate runs the rule's method. Errors that are password failures
// satisfy errors.Is(err, authcore.ErrPasswordFailed).
func (c *conn) authenticate(snap *snapshot.Snapshot, rule *hba.Rule, req *hba.Request) (*authResult, error) {
	res := &authResult{name: req.User, method: rule.Method}
	switch rule.Method {
	case hba.Reject:
		return nil, HBAReject(c.addrString(), req.User, req.Database, c.ssl)
	case hba.Trust:
		// Trust proves nothing, but a users-file entry that is disabled
		// or expired still may not log in.
		if u := snap.Users.Lookup(req.User); u != nil {
			if err := snap.Auth.CheckUsable(u); err != nil {
				return nil, err
			}
			res.user = u
		}
		return res, nil
	case hba.Password:
		c.cc.send(&pgproto3.AuthenticationCleartextPassword{})
		if err := c.cc.flush(); err != nil {
			return nil, err
		}
		pw, err := c.cc.readPassword()
		if err != nil {
			return nil, err
		}
		u, err := snap.Auth.CheckPassword(c.ctx(), req.User, pw)
		if err != nil {
			return nil, err
		}
		res.user, res.password = u, pw
		return res, nil
	}
	return nil, fmt.Errorf("method %s is not implemented on the wire", rule.Method)
}

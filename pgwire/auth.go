package pgwire

import (
	"errors"
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
	// clientcert= asks for a valid certificate before the method runs,
	// as PostgreSQL does; verify-full's name check comes after it.
	if rule.ClientCert != "" {
		leaf, err := c.clientCert()
		if err != nil {
			return nil, &certRefusal{reason: err.Error(), required: true}
		}
		res, err := c.runMethod(snap, rule, req)
		if err != nil {
			return nil, err
		}
		if rule.ClientCert == "verify-full" && leaf.Subject.CommonName != req.User {
			return nil, &certRefusal{reason: fmt.Sprintf("certificate CN %q is not the user", leaf.Subject.CommonName)}
		}
		return res, nil
	}
	return c.runMethod(snap, rule, req)
}

// runMethod proves the client by the rule's method alone.
func (c *conn) runMethod(snap *snapshot.Snapshot, rule *hba.Rule, req *hba.Request) (*authResult, error) {
	res := &authResult{name: req.User, method: rule.Method}
	switch rule.Method {
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
	case hba.JWT:
		// For drivers that can send nothing else, the token travels as
		// the cleartext password.
		c.cc.send(&pgproto3.AuthenticationCleartextPassword{})
		if err := c.cc.flush(); err != nil {
			return nil, err
		}
		tok, err := c.cc.readPassword()
		if err != nil {
			return nil, err
		}
		u, err := snap.Tokens.Verify(c.ctx(), tok)
		if err != nil {
			return nil, err
		}
		if u.Name != req.User {
			return nil, authcore.Fail(authcore.ReasonBadToken + ": token is for another user")
		}
		res.user = u
		return res, nil
	case hba.SCRAM, hba.MD5:
		// md5 performs SCRAM, as PostgreSQL does for a user whose stored
		// password is a SCRAM verifier; pgwarden stores no MD5 hashes.
		u, err := c.scram(snap, req.User)
		if err != nil {
			return nil, err
		}
		res.user = u
		return res, nil
	case hba.Cert:
		leaf, err := c.clientCert()
		if err != nil {
			return nil, &certRefusal{reason: err.Error(), required: true}
		}
		u, err := snap.Auth.CertUser(req.User, leaf.Subject.CommonName)
		if errors.Is(err, authcore.ErrCertName) {
			return nil, &certRefusal{reason: fmt.Sprintf("certificate CN %q is not the user", leaf.Subject.CommonName)}
		}
		if err != nil {
			return nil, err
		}
		res.user = u
		return res, nil
	case hba.Peer:
		osUser, err := peerUser(c.raw)
		if err != nil {
			return nil, fmt.Errorf("peer: %w", err)
		}
		if osUser != req.User {
			return nil, &peerMismatch{osUser: osUser, user: req.User}
		}
		if u := snap.Users.Lookup(req.User); u != nil {
			if err := snap.Auth.CheckUsable(u); err != nil {
				return nil, err
			}
			res.user = u
		}
		return res, nil
	}
	return nil, fmt.Errorf("method %s is not implemented on the wire", rule.Method)
}

// peerMismatch is a peer failure: the reason goes to the audit log, the
// client sees PostgreSQL's message.
type peerMismatch struct{ osUser, user string }

// certRefusal is a client-certificate failure; required tells a missing
// or invalid certificate (28000 "requires a valid client certificate") from
// a valid one naming someone else.
type certRefusal struct {
	reason   string
	required bool
}

func (e *certRefusal) Error() string { return e.reason }

// scram runs a SCRAM-SHA-256 exchange; over TLS it also offers
// SCRAM-SHA-256-PLUS with tls-server-end-point channel binding.
func (c *conn) scram(snap *snapshot.Snapshot, user string) (*authcore.User, error) {
	var cb []byte
	mechs := []string{authcore.MechSCRAM}
	if c.tls != nil && len(c.tlsMat.EndpointHash) > 0 {
		cb = c.tlsMat.EndpointHash
		mechs = []string{authcore.MechSCRAMPlus, authcore.MechSCRAM}
	}
	c.cc.send(&pgproto3.AuthenticationSASL{AuthMechanisms: mechs})
	if err := c.cc.flush(); err != nil {
		return nil, err
	}
	mech, data, err := c.cc.readSASLInitial()
	if err != nil {
		return nil, err
	}
	ex, err := snap.Auth.StartSCRAM(c.ctx(), user, mech, cb)
	if err != nil {
		return nil, err
	}
	out, _, err := ex.Step(data)
	if err != nil {
		return nil, err
	}
	c.cc.send(&pgproto3.AuthenticationSASLContinue{Data: out})
	if err := c.cc.flush(); err != nil {
		return nil, err
	}
	typ, body, err := c.cc.readMessage(maxAuthMessageLen)
	if err != nil {
		return nil, err
	}
	if typ != 'p' {
		return nil, ProtocolViolation("expected SASL response, got message type %q", typ)
	}
	out, _, err = ex.Step(body)
	if err != nil {
		return nil, err
	}
	c.cc.send(&pgproto3.AuthenticationSASLFinal{Data: out})
	return ex.User(), nil
}

func (e *peerMismatch) Error() string {
	return fmt.Sprintf("provided user name (%s) and authenticated user name (%s) do not match", e.user, e.osUser)
}

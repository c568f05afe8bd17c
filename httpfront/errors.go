package httpfront

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/hba"
	"github.com/pgwarden/pgwarden/snapshot"
)

// Every SQLSTATE the HTTP frontend sends of its own (the backend's own
// SQLSTATEs pass through unchanged).
const (
	codeInvalidAuthorization     = "28000" // no rule, reject, malformed credentials, a credential of the wrong kind
	codeInvalidPassword          = "28P01" // any password, user or token failure
	codeProtocolViolation        = "08P01" // a body or request pgwarden cannot read
	codeConnectionFailure        = "08006" // the backend cannot be reached
	codeResolutionUnknown        = "08007" // the backend fell silent after a statement's cancel
	codeRejectedConnection       = "08004" // a Host that is not this server's
	codeTooManyConnections       = "53300"
	codeOutOfMemory              = "53200" // http.max_request_memory
	codeProgramLimit             = "54000" // max_body_bytes, max_rows
	codeCharacterNotInRepertoire = "22021"
	codeInvalidParameterValue    = "22023"
	codeSyntaxError              = "42601"
	codeQueryCanceled            = "57014"
	codeActiveSQLTransaction     = "25001"
	codeFeatureNotSupported      = "0A000" // COPY to or from the client
	codeInternalError            = "XX000"
)

// refusalFailure is the one place where a refusal of authcore.Gate becomes
// an HTTP answer (SPEC section 6): its status, SQLSTATE, message and
// WWW-Authenticate scheme. The true reason stays in the audit log.
func refusalFailure(ref *authcore.Refusal, a *authcore.Attempt, creds *credentials) *authFailure {
	req := &hba.Request{Protocol: a.Protocol, Addr: a.Addr, SSL: a.SSL, Database: a.Database, User: a.User}
	f := &authFailure{status: http.StatusUnauthorized, code: codeInvalidPassword, reason: ref.Reason, issuer: ref.Issuer, scope: ref.Scope}
	switch {
	case creds.bearer != "":
		f.scheme = challengeBearer
	case creds.session != nil || creds.staleSession || creds.login:
		f.scheme = challengeCookie
	}
	switch ref.Kind {
	case authcore.RefusedNoRule:
		f.status, f.code, f.msg = http.StatusForbidden, codeInvalidAuthorization, req.NoRuleMessage()
	case authcore.RefusedRejected, authcore.RefusedPeer:
		f.status, f.code, f.msg = http.StatusForbidden, codeInvalidAuthorization, req.RejectMessage()
	case authcore.RefusedCertRequired:
		f.code, f.msg, f.scheme = codeInvalidAuthorization, "connection requires a valid client certificate", challengeNone
	case authcore.RefusedCertName:
		f.code, f.msg, f.scheme = codeInvalidAuthorization, fmt.Sprintf("certificate authentication failed for user %q", a.User), challengeNone
	case authcore.RefusedCredential:
		// The client sent the wrong kind of credential: say which kind
		// the rule wants, in words and in WWW-Authenticate. The SQLSTATE
		// stays the credential failure's.
		switch {
		case creds.session != nil || creds.login:
			f.msg = "this request's rule does not accept console sessions: it wants a " + string(ref.Wants)
		case ref.Wants == authcore.ProofToken:
			f.scheme, f.msg = challengeBearer, "this request's rule wants a bearer token (Authorization: Bearer)"
		case ref.Wants == authcore.ProofCertificate:
			f.scheme, f.msg = challengeNone, "this request's rule wants a client certificate"
		default:
			f.scheme, f.msg = challengeBasic, "this request's rule wants a password (Basic or inline credentials)"
		}
	case authcore.RefusedOAuth:
		f.code, f.scheme = codeInvalidAuthorization, challengeBearer
		f.msg = fmt.Sprintf("OAuth bearer authentication failed for user %q", a.User)
		if ref.InsufficientScope {
			f.status, f.insufficientScope = http.StatusForbidden, true
			f.msg = fmt.Sprintf("the token lacks a scope this request's rule asks for (scope %q)", ref.Scope)
		}
	case authcore.RefusedProtocol:
		f.status, f.code, f.msg = http.StatusBadRequest, codeProtocolViolation, "malformed credentials"
		if ref.Err == nil {
			f.msg = ref.Reason // the gate's own words about the names
		}
	case authcore.RefusedUnavailable:
		f.status, f.code, f.scheme = http.StatusServiceUnavailable, "57P03", challengeNone
		f.msg = "the user store is unreachable: logins are refused until it answers again"
	default: // RefusedPassword, RefusedClientGone
		f.msg = "authentication failed"
		if a.User != "" {
			f.msg = fmt.Sprintf("password authentication failed for user %q", a.User)
		}
		if creds.staleSession {
			f.msg = "the console session ended: log in again"
		}
	}
	return f
}

// fail writes an authentication refusal.
func (s *Server) fail(w http.ResponseWriter, snap *snapshot.Snapshot, f *authFailure) {
	status := f.status
	if status == 0 || status == http.StatusUnauthorized {
		status = snap.Config.HTTP.AuthFailureStatus
		switch f.scheme {
		case challengeBearer:
			w.Header().Set("WWW-Authenticate", bearerChallenge("invalid_token", f))
		case challengeCookie:
			w.Header().Set("WWW-Authenticate", cookieChallenge(snap.Config.HTTP.Realm))
		case challengeNone:
		default:
			w.Header().Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q, charset=\"UTF-8\"", snap.Config.HTTP.Realm))
		}
	}
	if f.insufficientScope {
		w.Header().Set("WWW-Authenticate", bearerChallenge("insufficient_scope", f))
	}
	writeError(w, status, f.code, f.msg)
}

// bearerChallenge is RFC 6750's challenge; under an oauth rule also where
// to learn about the issuer (RFC 9728's resource_metadata) and the scope
// to ask for, as PostgreSQL 18's discovery tells a wire client.
func bearerChallenge(errCode string, f *authFailure) string {
	ch := fmt.Sprintf(`Bearer error=%q`, errCode)
	if f.issuer != "" {
		ch += fmt.Sprintf(`, resource_metadata=%q`, "/.well-known/oauth-protected-resource")
		if f.scope != "" {
			ch += fmt.Sprintf(`, scope=%q`, f.scope)
		}
	}
	return ch
}

// internalError answers an error no client should see the text of: 500
// XX000 with a short request id that the log line carries too, so an
// operator can find what happened from what the client shows.
func (s *Server) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	var b [6]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	s.o.Log.Error(what, zap.String("request_id", id), zap.String("path", r.URL.Path), zap.Error(err))
	writeError(w, http.StatusInternalServerError, codeInternalError, fmt.Sprintf("internal error (request id %s): the server log says what happened", id))
}

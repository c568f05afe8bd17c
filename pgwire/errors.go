package pgwire

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/hba"
)

// SQLSTATEs pgwarden itself sends.
const (
	codeInvalidAuthorization  = "28000"
	codeInvalidPassword       = "28P01"
	codeProtocolViolation     = "08P01"
	codeConnectionFailure     = "08006"
	codeFeatureNotSupported   = "0A000"
	codeTooManyConnections    = "53300"
	codeCannotConnectNow      = "57P03"
	codeAdminShutdown         = "57P01"
	codeInsufficientPriv      = "42501"
	codeSyntaxError           = "42601"
	codeInvalidParameterValue = "22023"
	codeInternalError         = "XX000"
)

// Error is an error a client sees: a SQLSTATE and a message, FATAL unless
// said otherwise. Every refusal in SPEC section 5 has a constructor here.
type Error struct {
	Code    string
	Message string
	Detail  string
	Hint    string
	// Severity defaults to FATAL: errors before and during authentication
	// end the connection.
	Severity string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// NoHBARule is the refusal when no rule matches.
func NoHBARule(req *hba.Request) *Error {
	return &Error{Code: codeInvalidAuthorization, Message: req.NoRuleMessage()}
}

// HBAReject is the refusal when the matching rule's method is reject.
func HBAReject(req *hba.Request) *Error {
	return &Error{Code: codeInvalidAuthorization, Message: req.RejectMessage()}
}

// PasswordFailed is the one message for every password, user and token
// failure, whatever the true reason.
func PasswordFailed(user string) *Error {
	return &Error{Code: codeInvalidPassword, Message: fmt.Sprintf("password authentication failed for user %q", user)}
}

// CertRequired is the refusal of method cert without a client certificate.
func CertRequired() *Error {
	return &Error{Code: codeInvalidAuthorization, Message: "connection requires a valid client certificate"}
}

// CertFailed is the refusal of a client certificate whose CN is not the user.
func CertFailed(user string) *Error {
	return &Error{Code: codeInvalidAuthorization, Message: fmt.Sprintf("certificate authentication failed for user %q", user)}
}

// PeerFailed is PostgreSQL's refusal when the socket's OS user differs.
func PeerFailed(user string) *Error {
	return &Error{Code: codeInvalidAuthorization, Message: fmt.Sprintf("Peer authentication failed for user %q", user)}
}

// ProtocolViolation reports a malformed or unexpected client message.
func ProtocolViolation(format string, args ...any) *Error {
	return &Error{Code: codeProtocolViolation, Message: fmt.Sprintf(format, args...)}
}

// UnencryptedAfterSSL is the refusal of bytes that arrived between the
// SSLRequest and the TLS handshake (CVE-2021-23214).
func UnencryptedAfterSSL() *Error {
	return ProtocolViolation("received unencrypted data after SSL request")
}

// UnsupportedProtocol refuses a protocol major version other than 3.
func UnsupportedProtocol() *Error {
	return &Error{Code: codeFeatureNotSupported, Message: "unsupported frontend protocol"}
}

// AuthTimeout ends a client that did not finish authenticating in time.
func AuthTimeout() *Error { return ProtocolViolation("authentication timeout") }

// TooManyConnections refuses a client over server.max_connections.
func TooManyConnections() *Error {
	return &Error{Code: codeTooManyConnections, Message: "too many connections"}
}

// ShuttingDown refuses new clients while sessions drain.
func ShuttingDown() *Error {
	return &Error{Code: codeCannotConnectNow, Message: "pgwarden is shutting down"}
}

// BackendUnreachable reports a backend that could not be reached at all.
func BackendUnreachable() *Error {
	return &Error{Code: codeConnectionFailure, Message: "could not connect to the backend server"}
}

// AdminDenied refuses a non-admin user on the admin console.
func AdminDenied() *Error {
	return &Error{Code: codeInsufficientPriv, Message: "permission denied for admin console"}
}

// refusalError is what a client refused by the gate is told (SPEC section
// 5). The true reason is in the audit event, never here.
func refusalError(ref *authcore.Refusal, a *authcore.Attempt) error {
	req := &hba.Request{Protocol: a.Protocol, Addr: a.Addr, Local: a.Local, SSL: a.SSL, Database: a.Database, User: a.User}
	switch ref.Kind {
	case authcore.RefusedNoRule:
		return NoHBARule(req)
	case authcore.RefusedRejected:
		return HBAReject(req)
	case authcore.RefusedCertRequired:
		return CertRequired()
	case authcore.RefusedCertName:
		return CertFailed(a.User)
	case authcore.RefusedPeer:
		return PeerFailed(a.User)
	case authcore.RefusedClientGone:
		return errSilentClose
	case authcore.RefusedUnavailable:
		return &Error{Code: codeCannotConnectNow, Message: "the user store is unreachable: logins are refused until it answers again"}
	case authcore.RefusedOAuth:
		// PostgreSQL 18's own words and code for a failed oauth login.
		return &Error{Code: codeInvalidAuthorization, Message: fmt.Sprintf("OAuth bearer authentication failed for user %q", a.User)}
	case authcore.RefusedProtocol:
		var e *Error
		switch {
		case errors.As(ref.Err, &e):
			return e // the frontend's own protocol error
		case errors.Is(ref.Err, authcore.ErrSASLProtocol):
			return ProtocolViolation("%s", ref.Err.Error())
		case ref.Err != nil:
			return ref.Err // a closed socket, a deadline: fail() knows them
		}
		return ProtocolViolation("%s", ref.Reason)
	}
	// RefusedPassword, and a credential of the wrong kind (which the wire
	// never has: it asks for what the method wants).
	return PasswordFailed(a.User)
}

// errorResponse turns any error into the message a client receives. Our own
// errors map field by field; a backend's *pgconn.PgError keeps its code and
// message; anything else is an internal error whose detail stays in the log.
func errorResponse(err error) *pgproto3.ErrorResponse {
	var e *Error
	if errors.As(err, &e) {
		sev := e.Severity
		if sev == "" {
			sev = "FATAL"
		}
		return &pgproto3.ErrorResponse{Severity: sev, SeverityUnlocalized: sev, Code: e.Code, Message: e.Message, Detail: e.Detail, Hint: e.Hint}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// During connect every backend error ends the session: report it
		// as FATAL even when the backend said ERROR.
		return &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: pe.Code, Message: pe.Message,
			Detail: pe.Detail, Hint: pe.Hint}
	}
	return &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: codeInternalError, Message: "internal error"}
}

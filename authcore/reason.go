package authcore

import "errors"

// Reason is the true cause of an authentication failure. It goes to the
// audit log, never to the client: every password failure looks the same
// from outside.
type Reason string

// Reasons recorded in the audit log.
const (
	ReasonUnknownUser   Reason = "unknown user"
	ReasonWrongPassword Reason = "wrong password"
	ReasonEmptyPassword Reason = "empty password"
	ReasonNoPassword    Reason = "user has no password"
	ReasonExpired       Reason = "user expired (valid_until passed)"
	ReasonDisabled      Reason = "user disabled"
	ReasonNotSCRAM      Reason = "stored hash is not a SCRAM verifier"
	ReasonSCRAMProof    Reason = "SCRAM proof wrong"
	ReasonBadToken      Reason = "bad token"
	ReasonCanceled      Reason = "client went away during authentication"
)

// ErrPasswordFailed is the one failure a client learns of for any password,
// user, or token problem: SQLSTATE 28P01 on the wire, 401 over HTTP.
var ErrPasswordFailed = errors.New("password authentication failed")

// ErrStoreDown marks a credential that could not be checked because the
// store holding it ([auth_query]) did not answer: the login is refused as
// unavailable (57P03, HTTP 503), like a membership that cannot be read,
// and feeds no throttle. Until December 2026 it was the one password
// failure, so a backend outage told every database-held user that their
// password was wrong and held their next attempts back.
var ErrStoreDown = errors.New("the credential store did not answer")

type storeDownError struct{ err error }

func (e *storeDownError) Error() string        { return "auth_query failed: " + e.err.Error() }
func (e *storeDownError) Is(target error) bool { return target == ErrStoreDown }
func (e *storeDownError) Unwrap() error        { return e.err }

// Failure is an authentication failure with its true reason.
type Failure struct {
	Reason Reason
	// insufficientScope: a genuine token without a scope its rule asks
	// for (RFC 6750's insufficient_scope, not invalid_token).
	insufficientScope bool
}

func (f *Failure) Error() string { return "password authentication failed: " + string(f.Reason) }

// Is makes errors.Is(err, ErrPasswordFailed) true for every Failure.
func (f *Failure) Is(target error) bool { return target == ErrPasswordFailed }

// Fail returns a Failure for r.
func Fail(r Reason) error { return &Failure{Reason: r} }

// ReasonOf extracts the reason from a failure, or returns the error's text.
func ReasonOf(err error) string {
	var f *Failure
	if errors.As(err, &f) {
		return string(f.Reason)
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

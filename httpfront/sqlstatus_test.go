package httpfront

import "testing"

// A FATAL error is a bad gateway only when the server ended the session
// for its own reasons; a limit the request ran into stays the request's.
func TestOnlyTheServersOwnReasonsForEndingASessionAreABadGateway(t *testing.T) {
	for code, want := range map[string]bool{
		"57P01": true,  // admin shutdown, pg_terminate_backend
		"57P02": true,  // crash of another backend
		"57P05": true,  // idle_session_timeout
		"08006": true,  // connection failure
		"XX000": true,  // internal error
		"58030": true,  // I/O error
		"25P04": false, // transaction_timeout
		"25P03": false, // idle_in_transaction_session_timeout
		"28000": false,
		"":      false,
	} {
		if got := backendEndedSession(code); got != want {
			t.Errorf("%q: %v, want %v", code, got, want)
		}
	}
}

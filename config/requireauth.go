package config

import (
	"fmt"
	"slices"
	"strings"
)

// requireAuthMethods are the method names of libpq's require_auth.
var requireAuthMethods = []string{"password", "md5", "gss", "sspi", "scram-sha-256", "oauth", "none"}

// RequireAuth is [backend] require_auth read as libpq reads it: the
// authentication methods pgwarden lets the backend server ask for before
// it sends a credential. pgconn applies it to every login that sends a
// password; a SCRAM pass-through login (backend.scramPassthroughConn) asks
// it directly, since pgconn does not see that exchange.
type RequireAuth struct {
	raw string
	// denied are the methods the backend may not ask for: the zero
	// RequireAuth allows every method, as "" does.
	denied []string
	// required: the server must complete an authentication exchange;
	// AuthenticationOk straight after the startup ("none", trust) is
	// refused.
	required bool
}

// ParseRequireAuth reads a require_auth value: a comma-separated list of
// methods, or of methods each prefixed with "!" (all but those); "" allows
// every method and no authentication at all, as libpq's default. Mixing
// the two forms and naming a method twice are errors, as in libpq.
func ParseRequireAuth(s string) (RequireAuth, error) {
	ra := RequireAuth{raw: s}
	if strings.TrimSpace(s) == "" {
		return ra, nil
	}
	var named []string
	negated := false
	for i, part := range strings.Split(s, ",") {
		m := strings.TrimSpace(part)
		neg := strings.HasPrefix(m, "!")
		m = strings.TrimPrefix(m, "!")
		if i == 0 {
			negated = neg
		} else if neg != negated {
			return RequireAuth{}, fmt.Errorf("%q mixes methods with negated methods (\"!md5\"): write one kind", s)
		}
		if !slices.Contains(requireAuthMethods, m) {
			return RequireAuth{}, fmt.Errorf("%q: unknown method %q (one of %s, each optionally after \"!\")", s, m, strings.Join(requireAuthMethods, ", "))
		}
		if slices.Contains(named, m) {
			return RequireAuth{}, fmt.Errorf("%q names %q twice", s, m)
		}
		named = append(named, m)
	}
	if negated {
		ra.denied = named
		ra.required = slices.Contains(named, "none")
	} else {
		for _, m := range requireAuthMethods {
			if !slices.Contains(named, m) {
				ra.denied = append(ra.denied, m)
			}
		}
		ra.required = !slices.Contains(named, "none")
	}
	return ra, nil
}

// Allows says whether the backend may ask for method (a require_auth
// name).
func (ra RequireAuth) Allows(method string) bool { return !slices.Contains(ra.denied, method) }

// Required says whether the backend must authenticate pgwarden rather
// than let it in at once.
func (ra RequireAuth) Required() bool { return ra.required }

// Check is nil when the backend may ask for method, else an error worded
// as libpq (and pgconn) word it; method "none" is a backend that let
// pgwarden in without asking.
func (ra RequireAuth) Check(method string) error {
	if method == "none" && !ra.required || method != "none" && ra.Allows(method) {
		return nil
	}
	reason := "server requested " + method + " authentication"
	if method == "none" {
		reason = "server did not complete authentication"
	}
	return fmt.Errorf("authentication method requirement %q failed: %s", ra.raw, reason)
}

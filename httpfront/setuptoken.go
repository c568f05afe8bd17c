package httpfront

import (
	"crypto/subtle"
	"encoding/base64"
	"sync"
)

// SetupToken is the one-time secret of a fresh install: while the users
// file holds no admin, whoever presents it may create the first one. The
// process makes it at start and writes it to its log, the one place only
// the operator reads; it is spent by the first admin created.
type SetupToken struct {
	mu    sync.Mutex
	token string // "" once spent
}

// NewSetupToken makes a token of 256 random bits.
func NewSetupToken() *SetupToken {
	return &SetupToken{token: base64.RawURLEncoding.EncodeToString(randomBytes(32))}
}

// Value is the token, for the start-up log line; "" once spent.
func (t *SetupToken) Value() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.token
}

// Pending reports whether the token can still be used.
func (t *SetupToken) Pending() bool { return t != nil && t.Value() != "" }

// Check compares s with the token in constant time; a spent token matches
// nothing.
func (t *SetupToken) Check(s string) bool {
	if t == nil {
		return false
	}
	want := t.Value()
	return want != "" && subtle.ConstantTimeCompare([]byte(s), []byte(want)) == 1
}

// Spend makes the token unusable; it reports whether it was pending.
func (t *SetupToken) Spend() bool {
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	was := t.token != ""
	t.token = ""
	return was
}

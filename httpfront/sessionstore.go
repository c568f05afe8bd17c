package httpfront

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"

	"github.com/pgwarden/pgwarden/authcore"
)

// sessionIDBytes is the entropy of a session id: 256 bits, twice the
// 128 that OWASP asks for, so guessing stays hopeless whatever the number of
// live sessions.
const sessionIDBytes = 32

// SessionIDLen is the length of a session id as text (unpadded base64url).
var SessionIDLen = base64.RawURLEncoding.EncodedLen(sessionIDBytes)

// Session is one logged-in console user. Values handed out are copies: the
// store alone changes its entries.
type Session struct {
	User     string
	CSRF     string // the token every form and cookie-authenticated call must carry
	Created  time.Time
	LastSeen time.Time
	// cred is a digest of the user's stored password at login: when the
	// users file later holds another one (a password change by any path),
	// the session no longer matches its user and ends.
	cred [32]byte
}

// SessionLimits are the timeouts a session is checked against. They come
// from the configuration in force, so a reload applies to live sessions.
type SessionLimits struct {
	Idle     time.Duration // since the last request
	Absolute time.Duration // since login
}

// Sessions is the server-side store of console sessions, shared by every
// request of the process and kept across reloads. Ids are stored as their
// SHA-256, so the map never holds a usable id.
type Sessions struct {
	maxTotal   int
	maxPerUser int

	mu   sync.Mutex
	byID map[[32]byte]*Session
}

// NewSessions holds at most maxTotal sessions and maxPerUser per user; past
// either bound, creating one ends the least recently used (of that user
// first), so one user's logins cannot push everyone else out.
func NewSessions(maxTotal, maxPerUser int) *Sessions {
	return &Sessions{maxTotal: maxTotal, maxPerUser: maxPerUser, byID: make(map[[32]byte]*Session)}
}

// Create starts a session for u and returns its new random id with a copy
// of the session. The id is never derived from anything the client sent: a
// pre-login cookie is never promoted.
func (s *Sessions) Create(u *authcore.User, now time.Time) (string, Session) {
	id := NewOpaqueID()
	sess := &Session{
		User:     u.Name,
		CSRF:     base64.RawURLEncoding.EncodeToString(randomBytes(32)),
		Created:  now,
		LastSeen: now,
		cred:     credDigest(u),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.countUser(u.Name); n >= s.maxPerUser {
		s.evictOldest(func(x *Session) bool { return x.User == u.Name })
	}
	if len(s.byID) >= s.maxTotal {
		s.evictOldest(func(*Session) bool { return true })
	}
	s.byID[sessionKey(id)] = sess
	return id, *sess
}

// Get returns the live session with id and marks it used at now. An
// expired session is removed and reported as absent.
func (s *Sessions) Get(id string, lim SessionLimits, now time.Time) (Session, bool) {
	if !WellFormedSessionID(id) {
		return Session{}, false
	}
	k := sessionKey(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.byID[k]
	if sess == nil {
		return Session{}, false
	}
	if sess.expired(lim, now) {
		delete(s.byID, k)
		return Session{}, false
	}
	sess.LastSeen = now
	return *sess, true
}

// Delete ends the session with id, if there is one.
func (s *Sessions) Delete(id string) {
	if !WellFormedSessionID(id) {
		return
	}
	s.mu.Lock()
	delete(s.byID, sessionKey(id))
	s.mu.Unlock()
}

// EndUser ends every session of the named user and says how many there
// were.
func (s *Sessions) EndUser(name string) int {
	return s.sweep(func(x *Session) bool { return x.User == name })
}

// Sweep removes the sessions that expired at now, or whose user no longer
// holds them (see Session.HeldBy), and says how many it removed.
func (s *Sessions) Sweep(lim SessionLimits, now time.Time, held func(Session) bool) int {
	return s.sweep(func(x *Session) bool { return x.expired(lim, now) || !held(*x) })
}

// Len is the number of sessions stored, expired ones not yet swept
// included.
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

func (s *Sessions) sweep(end func(*Session) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, x := range s.byID {
		if end(x) {
			delete(s.byID, k)
			n++
		}
	}
	return n
}

func (s *Sessions) countUser(name string) int {
	n := 0
	for _, x := range s.byID {
		if x.User == name {
			n++
		}
	}
	return n
}

// evictOldest removes the least recently used session among those pick
// accepts. It runs only at a bound, so a linear scan is cheap enough.
func (s *Sessions) evictOldest(pick func(*Session) bool) {
	var oldest [32]byte
	var at time.Time
	found := false
	for k, x := range s.byID {
		if pick(x) && (!found || x.LastSeen.Before(at)) {
			oldest, at, found = k, x.LastSeen, true
		}
	}
	if found {
		delete(s.byID, oldest)
	}
}

func (x *Session) expired(lim SessionLimits, now time.Time) bool {
	return now.Sub(x.LastSeen) >= lim.Idle || now.Sub(x.Created) >= lim.Absolute
}

// HeldBy reports whether the session still belongs to u as the users file
// has it now: u exists, may log in, and has the password it logged in with.
// Disabling, removing or changing the password of a user, by whichever path
// (the console, the admin console, the CLI then a reload), ends their
// sessions through this check.
func (x Session) HeldBy(u *authcore.User, now time.Time) bool {
	if u == nil || u.Name != x.User || !u.CanLogIn(now) {
		return false
	}
	d := credDigest(u)
	return subtle.ConstantTimeCompare(d[:], x.cred[:]) == 1
}

// CheckCSRF compares token with the session's in constant time.
func (x Session) CheckCSRF(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(x.CSRF)) == 1
}

// WellFormedSessionID reports whether id has the shape of an id Create
// makes; anything else is refused before it is hashed or looked up.
func WellFormedSessionID(id string) bool {
	if len(id) != SessionIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// NewOpaqueID makes a random value of a session id's shape, for the
// browser's pre-login cookie too.
func NewOpaqueID() string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(sessionIDBytes))
}

func sessionKey(id string) [32]byte { return sha256.Sum256([]byte(id)) }

// credDigest stands for the user's stored password without keeping it.
func credDigest(u *authcore.User) [32]byte {
	return sha256.Sum256([]byte("pgwarden session\x00" + u.Name + "\x00" + u.Password))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

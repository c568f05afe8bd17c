package authcore

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// dummySCRAM is verified for unknown users so that a missing user costs as
// much as a present one with PostgreSQL's default SCRAM iteration count.
var dummySCRAM = sync.OnceValue(func() *SCRAMVerifier {
	return NewSCRAMVerifier(string(randomBytes(16)), scramIterations)
})

// ExternalCredentials is a credential store outside the users file: the
// backend database through [auth_query]. It is asked only about names the
// users file does not hold.
type ExternalCredentials interface {
	// User returns name's stored credentials, or nil when the store does
	// not know the name or only verifies (verify mode).
	User(ctx context.Context, name string) (*User, error)
	// Verify checks a cleartext password in the store itself; ok is false
	// when the store only looks hashes up (lookup mode).
	Verify(ctx context.Context, name, password string) (valid, ok bool, err error)
	// Roles returns the roles name is a member of in the store, directly
	// or through others, itself included; none when the store does not
	// know the name.
	Roles(ctx context.Context, name string) ([]string, error)
}

// Authenticator checks credentials against one immutable set of users. A
// reload makes a new Authenticator, which also empties the credential cache.
type Authenticator struct {
	users    *Users
	external ExternalCredentials
	// externalTurns serves the store's lookups by source in turn, as the
	// hash limiter serves hashing: every name a client makes up is a
	// query (and in verify mode a hash in the database), and one source's
	// flood must not make everyone else's lookups wait behind it.
	externalTurns *HashLimiter
	limiter       *HashLimiter
	limits        HashLimits
	cache         *credCache
	now           func() time.Time
}

// WithHashLimits sets the bounds a stored hash must keep to be usable
// (DefaultHashLimits unless set).
func (a *Authenticator) WithHashLimits(l HashLimits) *Authenticator {
	a.limits = l
	return a
}

// WithExternal adds a credential store consulted for names the users file
// does not hold.
func (a *Authenticator) WithExternal(e ExternalCredentials) *Authenticator {
	a.external = e
	a.externalTurns = NewHashLimiter(externalLookups)
	return a
}

// lookup finds name in the users file, then in the external store. An
// external store that fails is logged by the caller as the reason; the
// client sees the one password failure.
func (a *Authenticator) lookup(ctx context.Context, name string) (*User, error) {
	if u := a.users.Lookup(name); u != nil || a.external == nil {
		return u, nil
	}
	var u *User
	var err error
	if terr := a.externalTurns.Do(ctx, func() { u, err = a.external.User(ctx, name) }); terr != nil {
		return nil, terr
	}
	return u, err
}

// HasExternal says whether a credential store outside the users file is
// consulted: only then can a name hold roles the file does not list.
func (a *Authenticator) HasExternal() bool { return a.external != nil }

// ExternalRoles returns the roles a name the users file does not hold is
// a member of in the external store, for the HBA rules' "+role" and
// "samerole" entries: such a name is a PostgreSQL role, and PostgreSQL's
// memberships are what those entries mean for it. None without an
// external store, or for a name of the users file (whose roles are the
// file's).
func (a *Authenticator) ExternalRoles(ctx context.Context, name string) (roles []string, err error) {
	if a.external == nil || a.users.Lookup(name) != nil {
		return nil, nil
	}
	if terr := a.externalTurns.Do(ctx, func() { roles, err = a.external.Roles(ctx, name) }); terr != nil {
		return nil, terr
	}
	return roles, err
}

// externalLookups is how many store lookups run at once: the auth_query
// pool's connections.
const externalLookups = 2

// NewAuthenticator serves users, hashing under limiter.
func NewAuthenticator(users *Users, limiter *HashLimiter) *Authenticator {
	return &Authenticator{users: users, limiter: limiter, limits: DefaultHashLimits, cache: newCredCache(10000, 10*time.Minute), now: time.Now}
}

// Users returns the user set this authenticator serves.
func (a *Authenticator) Users() *Users { return a.users }

// CheckPassword verifies a cleartext password for the named user against
// whatever hash kind is stored. Any failure is a *Failure (errors.Is
// ErrPasswordFailed) whose reason is for the log only; a canceled ctx
// returns ctx's error.
func (a *Authenticator) CheckPassword(ctx context.Context, name, password string) (*User, error) {
	// As PostgreSQL, an empty password is refused before anyone is looked
	// up: refused after the lookup, it came back at once for a known name
	// and only after a decoy hash for an unknown one, which told them
	// apart.
	if password == "" {
		return nil, Fail(ReasonEmptyPassword)
	}
	if a.users.Lookup(name) == nil && a.external != nil {
		var valid, ok bool
		var err error
		if terr := a.externalTurns.Do(ctx, func() { valid, ok, err = a.external.Verify(ctx, name, password) }); terr != nil {
			return nil, terr
		}
		if ok {
			switch {
			case err != nil:
				return nil, &storeDownError{err}
			case !valid:
				return nil, Fail(ReasonWrongPassword)
			}
			return &User{Name: name}, nil
		}
	}
	// Whatever goes wrong before the real check, the failure costs what a
	// real user's check costs (see Users.decoyFor).
	decoy := func(r Reason) (*User, error) {
		if err := a.limiter.Do(ctx, func() { a.users.decoyFor(name).Verify(password) }); err != nil {
			return nil, err
		}
		return nil, Fail(r)
	}
	u, err := a.lookup(ctx, name)
	switch {
	case err != nil:
		return nil, &storeDownError{err}
	case u == nil:
		return decoy(ReasonUnknownUser)
	case u.hash == nil:
		return decoy(ReasonNoPassword)
	}
	if err := a.limits.Check(u.hash); err != nil {
		// Only an external store can hand over such a hash: the users
		// file refuses to load one.
		return decoy(Reason("stored hash unusable: " + err.Error()))
	}
	ok, err := a.verify(ctx, u, password)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, Fail(ReasonWrongPassword)
	}
	// Status is checked after the password so that a wrong password and
	// an expired account cost the same and look the same.
	if r := u.unusable(a.now()); r != "" {
		return nil, Fail(r)
	}
	return u, nil
}

// CheckUsable reports whether a user proven by other means (SCRAM, a
// certificate, a token) may log in now.
func (a *Authenticator) CheckUsable(u *User) error {
	if r := u.unusable(a.now()); r != "" {
		return Fail(r)
	}
	return nil
}

func (a *Authenticator) verify(ctx context.Context, u *User, password string) (bool, error) {
	key := a.cache.digest(u.Name, u.Password, password)
	if a.cache.has(key) {
		return true, nil
	}
	// A burst of identical logins hashes once; the others wait for it.
	for {
		v, err, shared := a.cache.flight.Do(hex.EncodeToString(key[:]), func() (any, error) {
			ok := false
			if err := a.limiter.Do(ctx, func() { ok = u.hash.Verify(password) }); err != nil {
				return false, err
			}
			if ok {
				a.cache.add(key)
			}
			return ok, nil
		})
		if err != nil && shared && ctx.Err() == nil {
			// The login that waited for the hash on everyone's behalf
			// gave up (its client left); this one is still here and
			// waits in turn itself, instead of being dropped as if
			// its own client had gone.
			continue
		}
		if err != nil {
			return false, err
		}
		return v.(bool), nil
	}
}

// credCache remembers verified cleartext credentials by a keyed digest of
// user, stored hash and password; the plaintext is never kept. Including the
// stored hash means a password change invalidates entries by itself.
type credCache struct {
	secret []byte
	ttl    time.Duration
	max    int
	flight singleflight.Group

	mu      sync.Mutex
	entries map[[32]byte]time.Time
}

func newCredCache(max int, ttl time.Duration) *credCache {
	return &credCache{secret: randomBytes(32), ttl: ttl, max: max, entries: make(map[[32]byte]time.Time)}
}

func (c *credCache) digest(user, stored, password string) [32]byte {
	m := hmac.New(sha256.New, c.secret)
	for _, s := range []string{user, stored, password} {
		var n [4]byte
		n[0], n[1], n[2], n[3] = byte(len(s)>>24), byte(len(s)>>16), byte(len(s)>>8), byte(len(s))
		m.Write(n[:])
		m.Write([]byte(s))
	}
	var out [32]byte
	m.Sum(out[:0])
	return out
}

func (c *credCache) has(k [32]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.entries[k]
	if ok && time.Now().After(exp) {
		delete(c.entries, k)
		return false
	}
	return ok
}

func (c *credCache) add(k [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		// Evict an arbitrary entry: map iteration order is random enough
		// that an attacker cannot aim evictions.
		for old := range c.entries {
			delete(c.entries, old)
			break
		}
	}
	c.entries[k] = time.Now().Add(c.ttl)
}

// NewExternalUser makes the user an external store found: a name, a
// stored hash in any accepted format, and when the password stops being
// valid (nil: never), as PostgreSQL's VALID UNTIL.
func NewExternalUser(name, hash string, validUntil *time.Time) (*User, error) {
	h, err := ParseHash(hash)
	if err != nil {
		return nil, err
	}
	return &User{Name: name, Password: hash, hash: h, ValidUntil: validUntil}, nil
}

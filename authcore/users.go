// Package authcore proves identities: it holds the users, verifies
// passwords of every stored hash kind, throttles failures and caches
// verified credentials. It knows nothing of sockets or HTTP; both frontends
// call it the same way.
package authcore

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/internal/ascii"
)

// User is one entry of the users file. Users are immutable once loaded;
// a change produces a new Users value on reload.
type User struct {
	Name            string     `toml:"name"`
	Password        string     `toml:"password,omitempty"`
	Secret          string     `toml:"secret,omitempty"`
	Roles           []string   `toml:"roles,omitempty"`
	BackendUser     string     `toml:"backend_user,omitempty"`
	BackendPassword string     `toml:"backend_password,omitempty"`
	ValidUntil      *time.Time `toml:"valid_until,omitempty"`
	Disabled        bool       `toml:"disabled,omitempty"`
	JWT             *UserJWT   `toml:"jwt,omitempty"`

	hash         Hash
	passwordLine int // where the password stands in the users file
}

// UserJWT binds a user to the identity an external issuer vouches for.
type UserJWT struct {
	Iss      string `toml:"iss"`
	Username string `toml:"username"`
	Aud      string `toml:"aud,omitempty"`
}

// Hash is the parsed stored password hash, nil when the user has none.
func (u *User) Hash() Hash { return u.hash }

// HasRole reports whether the user holds role.
func (u *User) HasRole(role string) bool {
	for _, r := range u.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// BackendRole is the PostgreSQL role this user becomes on the backend.
func (u *User) BackendRole() string {
	if u.BackendUser != "" {
		return u.BackendUser
	}
	return u.Name
}

// CanLogIn reports whether the user may log in at all now: not disabled,
// valid_until not passed.
func (u *User) CanLogIn(now time.Time) bool { return u.unusable(now) == "" }

// unusable says why the user may not log in at all now, or "".
func (u *User) unusable(now time.Time) Reason {
	switch {
	case u.Disabled:
		return ReasonDisabled
	case u.ValidUntil != nil && now.After(*u.ValidUntil):
		return ReasonExpired
	}
	return ""
}

// Users is the loaded users file: an immutable map by name.
type Users struct {
	byName map[string]*User
	list   []*User
	// decoys cost what the users' own hashes cost (see decoyFor).
	decoys []Hash
	// fingerprint is the digest of what the users were read from, when
	// their store keeps one (the PostgreSQL store: an instance told of a
	// change that left the users as they are need not reload).
	fingerprint [32]byte
}

// Fingerprint is the digest of what the users were read from; zero when
// unknown.
func (us *Users) Fingerprint() [32]byte { return us.fingerprint }

// SetFingerprint records the digest of what the users were read from.
func (us *Users) SetFingerprint(f [32]byte) { us.fingerprint = f }

// NewUsers indexes list; names must be unique and non-empty.
func NewUsers(list []*User) (*Users, error) {
	us := &Users{byName: make(map[string]*User, len(list)), list: list}
	for _, u := range list {
		if u.Name == "" {
			return nil, errors.New("a user has no name")
		}
		if err := CheckUserName(u.Name); err != nil {
			return nil, err
		}
		if _, dup := us.byName[u.Name]; dup {
			return nil, fmt.Errorf("user %q is listed twice", u.Name)
		}
		us.byName[u.Name] = u
		if u.hash != nil {
			us.decoys = append(us.decoys, decoy(u.hash))
		}
	}
	return us, nil
}

// MaxNameBytes bounds the user and database names a login may carry: four
// times PostgreSQL's 63 (NAMEDATALEN), room for any e-mail address or
// certificate CN. A name is a key of the throttle's table and a field of
// every audit line; unbounded, one unauthenticated client filled the
// memory and the log with megabyte names (HTTP inline credentials), each
// failure storing and writing one.
const MaxNameBytes = 256

// CheckUserName refuses a user name that is not UTF-8 or holds a control
// character (a newline, a zero byte): names are shown in audit lines, psql
// tables (SHOW USERS, SHOW CLIENTS) and error messages, where such a name
// could pass for other text, and a zero byte could never log in over the
// wire. The first-run setup page refused them already; the users file, the
// CLI, the admin console and the store took them.
func CheckUserName(name string) error {
	if name == "" {
		return errors.New("a user name cannot be empty")
	}
	if len(name) > MaxNameBytes {
		return fmt.Errorf("user name %q... is %d bytes, over pgwarden's limit of %d", name[:32], len(name), MaxNameBytes)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("user name %q is not valid UTF-8", name)
	}
	if i := strings.IndexFunc(name, unicode.IsControl); i >= 0 {
		return fmt.Errorf("user name %q holds a control character", name)
	}
	return nil
}

// Lookup returns the named user or nil.
func (us *Users) Lookup(name string) *User {
	if us == nil {
		return nil
	}
	return us.byName[name]
}

// All returns the users sorted by name.
func (us *Users) All() []*User {
	out := append([]*User(nil), us.list...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// AnyWithRole reports whether some user holds role.
func (us *Users) AnyWithRole(role string) bool {
	for _, u := range us.list {
		if u.HasRole(role) {
			return true
		}
	}
	return false
}

// Len is the number of users.
func (us *Users) Len() int { return len(us.list) }

// usersFile is the on-disk shape of the users file.
type usersFile struct {
	User []*User `toml:"user"`
}

// LoadUsers reads and checks the users file at path. Every problem is
// reported with its line, and no password hash is ever quoted back.
func LoadUsers(path string) (*Users, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if pe, ok := err.(*os.PathError); ok {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return ParseUsers(path, data)
}

// ParseUsers decodes a users file read from path.
func ParseUsers(path string, data []byte) (*Users, error) {
	var f usersFile
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		if pe, ok := err.(toml.ParseError); ok {
			msg := pe.Message
			if src := strings.Split(string(data), "\n"); pe.Position.Line >= 1 && pe.Position.Line <= len(src) {
				msg = config.RedactSecretSyntax(strings.TrimSpace(src[pe.Position.Line-1]), msg)
			}
			return nil, config.Errors{{File: path, Line: pe.Position.Line, Msg: msg}}
		}
		return nil, config.Errors{{File: path, Msg: err.Error()}}
	}
	lines := config.KeyLines(data)
	var errs config.Errors
	undecoded := map[string]bool{}
	for _, k := range md.Undecoded() {
		undecoded[k.String()] = true
		errs = append(errs, &config.Error{File: path, Line: lines.Find(k.String()), Key: k.String(), Msg: "unknown key"})
	}
	for _, k := range md.Keys() {
		// TOML keys are case-sensitive, but the decoder fills password
		// from Password too, and from the later of the two when both are
		// written (roles = [] then Roles = ["admin"]).
		if undecoded[k.String()] {
			continue
		}
		// Only the last part: a table's own key is in md.Keys() too.
		if part := k[len(k)-1]; !ascii.IsLowerName(part) {
			errs = append(errs, &config.Error{File: path, Line: lines.Find(k.String()), Key: k.String(),
				Msg: fmt.Sprintf("unknown key; keys are case-sensitive: write %s", strings.ToLower(part))})
		}
	}
	for i, u := range f.User {
		at := func(key string) (int, string) {
			return lines.Line(fmt.Sprintf("user.%d.%s", i, key)), fmt.Sprintf("user[%d].%s", i+1, key)
		}
		if u.Name == "" {
			line, key := at("name")
			errs = append(errs, &config.Error{File: path, Line: line, Key: key, Msg: "is required"})
		} else if err := CheckUserName(u.Name); err != nil {
			line, key := at("name")
			errs = append(errs, &config.Error{File: path, Line: line, Key: key, Msg: err.Error()})
		}
		if u.Password != "" {
			h, err := ParseHash(u.Password)
			u.passwordLine, _ = at("password")
			if err != nil {
				line, key := at("password")
				errs = append(errs, &config.Error{File: path, Line: line, Key: key, Msg: fmt.Sprintf("user %q: %v", u.Name, err)})
			}
			u.hash = h
		}
		if u.Secret != "" {
			if err := CheckSecret(u.Secret); err != nil {
				line, key := at("secret")
				errs = append(errs, &config.Error{File: path, Line: line, Key: key, Msg: fmt.Sprintf("user %q: %v", u.Name, err)})
			}
		}
		if u.JWT != nil && (u.JWT.Iss == "" || u.JWT.Username == "") {
			line, key := at("jwt")
			errs = append(errs, &config.Error{File: path, Line: line, Key: key, Msg: "iss and username are required"})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	us, err := NewUsers(f.User)
	if err != nil {
		return nil, config.Errors{{File: path, Msg: err.Error()}}
	}
	return us, nil
}

// CheckPasswordPolicy enforces users.password_min_length, counted in
// characters (not bytes), with no upper limit short of what bcrypt cannot
// take (bcrypt itself refuses over 72 bytes rather than truncating).
func CheckPasswordPolicy(pw string, minLength int) error {
	if n := utf8.RuneCountInString(pw); n < minLength {
		return fmt.Errorf("password too short: %d characters, users.password_min_length is %d", n, minLength)
	}
	if !utf8.ValidString(pw) {
		return errors.New("password is not valid UTF-8")
	}
	return nil
}

// Revoked names the users of old whose logins next no longer vouches for
// as it did: removed, disabled or expired, given another password, token
// secret or external identity, mapped to another backend role, or
// stripped of a role (an HBA "+role" rule or the admin console may have
// let them in by it). Their established sessions are to end, as ALTER
// USER ends them, wherever the change came from.
func Revoked(old, next *Users, now time.Time) []string {
	if old == nil {
		return nil
	}
	var names []string
	for _, u := range old.list {
		n := next.Lookup(u.Name)
		// A first password, secret (made by the first token) or
		// external identity revokes nothing: there was none to revoke.
		if n == nil || n.unusable(now) != "" || changed(u.Password, n.Password) || changed(u.Secret, n.Secret) ||
			n.BackendRole() != u.BackendRole() || (u.JWT != nil && !sameJWT(u.JWT, n.JWT)) || lostRole(u, n) {
			names = append(names, u.Name)
		}
	}
	return names
}

// changed says whether a credential that was set is now another or gone.
func changed(old, next string) bool { return old != "" && next != old }

func sameJWT(a, b *UserJWT) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// lostRole says whether next lacks a role u held.
func lostRole(u, next *User) bool {
	for _, r := range u.Roles {
		if !next.HasRole(r) {
			return true
		}
	}
	return false
}

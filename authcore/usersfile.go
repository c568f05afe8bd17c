package authcore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"

	"github.com/pgwarden/pgwarden/internal/atomicfile"
)

// ErrNoSuchUser is what ChangePassword returns for a name the users file
// does not hold.
var ErrNoSuchUser = errors.New("no such user")

// ErrPasswordChangedMeanwhile refuses a password change made on the
// strength of a password the store no longer holds (PasswordChangeFrom).
var ErrPasswordChangedMeanwhile = errors.New("the password was changed meanwhile")

// HashNewPassword is the one path from a password someone chose to a
// stored hash: users.password_min_length's policy, then the hash (algo ""
// is SCRAM-SHA-256). The CLI, the admin console, the web console and the
// first-run setup all go through it; PasswordChange (or a new User) then
// stores the hash through the users-file writer of their choice.
func HashNewPassword(algo, password string, minLength int) (string, error) {
	if err := CheckPasswordPolicy(password, minLength); err != nil {
		return "", err
	}
	return HashPassword(algo, password)
}

// PasswordOrVerifier is what the admin console stores for CREATE USER
// ... PASSWORD and ALTER USER ... PASSWORD, read as PostgreSQL reads
// them: a SCRAM-SHA-256 verifier (what psql's \password and other
// clients send after they hashed the password themselves) is stored as it
// is, once it parses and is within limits; an MD5 hash, which pgwarden
// cannot use, is refused rather than taken for the password itself; any
// other string is a password, under the policy, hashed as HashNewPassword
// does. The length policy cannot see through a verifier, as in
// PostgreSQL.
func PasswordOrVerifier(password string, minLength int, limits HashLimits) (string, error) {
	if strings.HasPrefix(password, "SCRAM-SHA-256$") {
		v, err := ParseSCRAM(password)
		if err != nil {
			return "", err
		}
		if err := limits.Check(v); err != nil {
			return "", err
		}
		return v.String(), nil
	}
	if isMD5Hash(password) {
		return "", errors.New("MD5 password hashes cannot be used by pgwarden: give the password, or a SCRAM-SHA-256 verifier")
	}
	return HashNewPassword(AlgoSCRAM, password, minLength)
}

// isMD5Hash says whether s has the form of PostgreSQL's MD5 hashes: "md5"
// and 32 hexadecimal digits.
func isMD5Hash(s string) bool {
	if len(s) != 35 || !strings.HasPrefix(s, "md5") {
		return false
	}
	for _, c := range s[3:] {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// PasswordChangeFrom is PasswordChange for a user who proved the password
// stored as was (User.Password). When the store holds another by the time
// the change is written (an admin reset it while the proof was checked or
// the throttle held the request), the change is refused with
// ErrPasswordChangedMeanwhile: it must not undo the reset with a password
// the reset revoked.
func PasswordChangeFrom(name, was, hash string) func([]*User) ([]*User, error) {
	change := PasswordChange(name, hash)
	return func(list []*User) ([]*User, error) {
		for _, u := range list {
			if u.Name == name && u.Password != was {
				return nil, ErrPasswordChangedMeanwhile
			}
		}
		return change(list)
	}
}

// PasswordChange is the change of UpdateUsersFile that stores hash as the
// named user's password. A user's token secret, if it has one, is rotated
// with it: tokens end with the password they were issued under.
func PasswordChange(name, hash string) func([]*User) ([]*User, error) {
	return func(list []*User) ([]*User, error) {
		for _, u := range list {
			if u.Name == name {
				u.Password = hash
				if u.Secret != "" {
					u.Secret = NewSecret()
				}
				return list, nil
			}
		}
		return nil, fmt.Errorf("%w: %q", ErrNoSuchUser, name)
	}
}

// UpdateUsersFile rewrites the users file through change, atomically and
// under an exclusive lock: the new content goes to a temporary file in the
// same folder, is fsynced, renamed over the old one, and the folder is
// fsynced. A crash leaves the old file or the new one, never a torn one, and
// two writers never lose each other's update. A new file is mode 0600; an
// existing one keeps its mode, owner and group (and so does the lock file
// made beside it), or nothing is written.
func UpdateUsersFile(path string, change func(users []*User) ([]*User, error)) error {
	return UpdateUsersFileChecked(path, change, nil)
}

// UpdateUsersFileChecked is UpdateUsersFile with a check of the new users,
// exactly as they will be read back from the file, before anything is
// written: a running server builds and validates its whole new state there,
// so that a change it cannot apply is never written (and never applied
// silently by a later reload).
func UpdateUsersFileChecked(path string, change func(users []*User) ([]*User, error), check func(*Users) error) error {
	// Every writer locks and writes the file itself, whichever link it
	// was reached through.
	path, err := atomicfile.Resolve(path)
	if err != nil {
		return err
	}
	lock, err := atomicfile.OpenLock(path + ".lock")
	if err != nil {
		return fmt.Errorf("%s.lock: %w", path, err)
	}
	defer lock.Close()
	if err := atomicfile.OwnLike(lock, path); err != nil {
		return fmt.Errorf("%s.lock: cannot give it the users file's owner: %v", path, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %v", path, err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)

	var list []*User
	if data, err := os.ReadFile(path); err == nil {
		us, err := ParseUsers(path, data)
		if err != nil {
			return err
		}
		list = us.list
	} else if !os.IsNotExist(err) {
		return err
	}
	list, err = change(list)
	if err != nil {
		return err
	}
	if _, err := NewUsers(list); err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.WriteString("# pgwarden users file: written by pgwarden; edit with `pgwarden user` when the server runs.\n")
	if err := toml.NewEncoder(&buf).Encode(usersFile{User: list}); err != nil {
		return err
	}
	if check != nil {
		next, err := ParseUsers(path, buf.Bytes())
		if err != nil {
			return err
		}
		if err := check(next); err != nil {
			return err
		}
	}
	return atomicfile.Write(path, buf.Bytes(), 0o600)
}

// EncodeUsers writes users in the users file's form ([[user]] blocks),
// which ParseUsers reads back; the PostgreSQL store keeps one such block
// per user.
func EncodeUsers(list []*User) ([]byte, error) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(usersFile{User: list}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

package authcore

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"

	"github.com/pgwarden/pgwarden/internal/atomicfile"
)

// ErrNoSuchUser is what ChangePassword returns for a name the users file
// does not hold.
var ErrNoSuchUser = errors.New("no such user")

// ChangePassword stores hash as the named user's password in the users file
// at path. A user's token secret, if it has one, is rotated with it: tokens
// end with the password they were issued under.
func ChangePassword(path, name, hash string) error {
	return UpdateUsersFile(path, func(list []*User) ([]*User, error) {
		for _, u := range list {
			if u.Name == name {
				u.Password = hash
				if u.Secret != "" {
					u.Secret = NewSecret()
				}
				return list, nil
			}
		}
		return nil, fmt.Errorf("%w: %q in %s", ErrNoSuchUser, name, path)
	})
}

// UpdateUsersFile rewrites the users file through change, atomically and
// under an exclusive lock: the new content goes to a temporary file in the
// same folder, is fsynced, renamed over the old one, and the folder is
// fsynced. A crash leaves the old file or the new one, never a torn one, and
// two writers never lose each other's update. The file is mode 0600.
func UpdateUsersFile(path string, change func(users []*User) ([]*User, error)) error {
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
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
	return atomicfile.Write(path, buf.Bytes(), 0o600)
}

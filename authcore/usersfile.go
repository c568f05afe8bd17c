package authcore

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"
)

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
	return writeAtomic(path, buf.Bytes(), 0o600)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

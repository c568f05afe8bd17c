// Package atomicfile writes files so that a crash leaves the old content or
// the new, never a torn file: a temporary file in the same folder, fsync,
// rename, fsync of the folder.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Write replaces path with data. A new file gets mode; a file that exists
// keeps its own mode, owner and group, so that `pgwarden user add` run as
// root leaves a service user's 0600 file readable by that service. When the
// owner cannot be kept (a user other than root rewriting another user's
// file), nothing is written and the error says so.
//
// A path that is a symlink is written where it leads, and stays a link: a
// users file kept in a secrets folder and linked from the configuration's
// was replaced by a file of its own beside the link, which the folder's
// next deployment then no longer reached.
func Write(path string, data []byte, mode os.FileMode) error {
	path, err := Resolve(path)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	uid, gid := -1, -1
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	} else if !os.IsNotExist(err) {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if uid >= 0 && (uid != os.Getuid() || gid != os.Getgid()) {
		if err := tmp.Chown(uid, gid); err != nil {
			tmp.Close()
			return fmt.Errorf("%s belongs to uid %d, gid %d and this process (uid %d) cannot write a replacement it would own: run as that user or as root: %v",
				path, uid, gid, os.Getuid(), err)
		}
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

// Resolve is the file path names: path itself, or where the symbolic
// links at path lead, when every one of them belongs to this process's
// user or to root. A link of another user is refused: in a folder others
// may write to (/tmp has the sticky bit, which stops replacing a file but
// not planting a link where none is yet), such a link would make pgwarden,
// perhaps run as root, write a file of the link owner's choosing.
func Resolve(path string) (string, error) {
	for range 40 { // as the kernel's own bound on links followed
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			return path, nil // a file, or none yet: written here
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
			return "", fmt.Errorf("%s is a symbolic link of uid %d, neither this user's nor root's: not followed (replace it with the file, or a link of your own)", path, st.Uid)
		}
		target, err := os.Readlink(path)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = target
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", path)
}

// OwnLike gives the open file f the owner and group of like, when like
// exists and they differ; for files made beside another (a lock file).
// It changes f itself (fchown), never what a name leads to.
func OwnLike(f *os.File, like string) error {
	fi, err := os.Stat(like)
	if err != nil {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	cur, err := f.Stat()
	if err != nil {
		return err
	}
	if cst, ok := cur.Sys().(*syscall.Stat_t); ok && cst.Uid == st.Uid && cst.Gid == st.Gid {
		return nil
	}
	return f.Chown(int(st.Uid), int(st.Gid))
}

// OpenLock opens (making it when missing) the lock file at path, never
// through a symbolic link: a link planted there (in /tmp, say) would
// otherwise have the lock's owner given to whatever it leads to.
func OpenLock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
}

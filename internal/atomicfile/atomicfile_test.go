package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func owner(t *testing.T, path string) (uint32, uint32, os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid, fi.Mode().Perm()
}

func TestANewFileGetsTheModeAsked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := Write(path, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, mode := owner(t, path); mode != 0o600 {
		t.Fatalf("mode %o", mode)
	}
}

func TestARewriteKeepsOwnerGroupAndMode(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("changing a file's owner needs root; CI runs as root")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "users.toml")
	if err := os.WriteFile(path, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 4242, 4343); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	uid, gid, mode := owner(t, path)
	if uid != 4242 || gid != 4343 || mode != 0o640 {
		t.Fatalf("after the rewrite: uid %d gid %d mode %o, want 4242 4343 640", uid, gid, mode)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Fatalf("content %q", b)
	}
	lock := path + ".lock"
	f, err := OpenLock(lock)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := OwnLike(f, path); err != nil {
		t.Fatal(err)
	}
	if uid, gid, _ := owner(t, lock); uid != 4242 || gid != 4343 {
		t.Fatalf("lock file owner %d:%d", uid, gid)
	}
}

// TestALockIsNeverOpenedThroughALink: a link planted where the lock file
// goes is refused, and what it leads to keeps its owner.
func TestALockIsNeverOpenedThroughALink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "users.toml.lock")); err != nil {
		t.Fatal(err)
	}
	if f, err := OpenLock(filepath.Join(dir, "users.toml.lock")); err == nil {
		f.Close()
		t.Fatal("the lock was opened through a link")
	}
}

// TestAWriteThroughASymlinkKeepsTheLink: the file the link leads to gets
// the new content, and the link stays a link.
func TestAWriteThroughASymlinkKeepsTheLink(t *testing.T) {
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(secrets, "users.toml")
	if err := os.WriteFile(real, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "users.toml")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := Write(link, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v %v", fi, err)
	}
	b, err := os.ReadFile(real)
	if err != nil || string(b) != "new" {
		t.Fatalf("the target holds %q (%v)", b, err)
	}
	if fi, _ := os.Stat(real); fi.Mode().Perm() != 0o640 {
		t.Fatalf("the target's mode became %v", fi.Mode().Perm())
	}
}

// TestALinkOfAnotherUserIsNotFollowed: a link someone else planted (in a
// folder such as /tmp, where the sticky bit stops replacing files, not
// adding links) is refused rather than written through, and its target
// is untouched.
func TestALinkOfAnotherUserIsNotFollowed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Log("not root: a link of another user cannot be made here; the refusal is tested as root (CI)")
		return
	}
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "users.toml")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	err := Write(link, []byte("[[user]]"), 0o600)
	if err == nil || !strings.Contains(err.Error(), "not followed") {
		t.Fatalf("a link of uid 4242 was written through: %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("the link's target became %q", b)
	}
}

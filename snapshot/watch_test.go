package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/authcore"
)

// A file changed after the server loaded it and before its watcher began
// (a deployment rewriting the users file as the service starts) is
// reloaded: the watcher starts from the files as the load read them. It
// used to start from the files as they were when it began, took the
// change for seen, and a password it revoked kept working until the next
// change or SIGHUP (TestAUsersFileChangedDuringAReloadIsInForce failed so
// under load).
func TestAChangeBetweenTheLoadAndTheWatchIsReloaded(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.toml")
	if err := os.WriteFile(users, []byte("[[user]]\nname = \"alice\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte("[users]\nfile = \""+users+"\"\n[[hba]]\nmethod = \"trust\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	first, err := LoadFrom(cfgPath, authcore.NewHashLimiter(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder(cfgPath, first, authcore.NewHashLimiter(0))
	// The change lands before the watch begins.
	if err := os.WriteFile(users, []byte("[[user]]\nname = \"bob\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reloaded := make(chan struct{}, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reload := func() error {
		_, err := h.Reload()
		reloaded <- struct{}{}
		return err
	}
	if err := WatchFiles(ctx, h, reload, zap.NewNop(), 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reloaded:
	case <-time.After(10 * time.Second):
		t.Fatal("the change made before the watch began was never reloaded")
	}
	if h.Current().Users.Lookup("bob") == nil || h.Current().Users.Lookup("alice") != nil {
		t.Fatal("the reload did not bring the changed users file")
	}
	// Nothing changed since: no second reload.
	select {
	case <-reloaded:
		t.Fatal("a reload with nothing changed")
	case <-time.After(300 * time.Millisecond):
	}
}

package snapshot

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/backend"
)

// A users change builds the new state from the configuration in force, and
// sessions route by that configuration meanwhile: the build must not write
// what it derives (the backend TLS digest, the [[databases]] entries taken
// for the default server) into it. Before, it did, in place: a data race,
// and an entry's guard could read false for a moment while it was
// recomputed. Run with -race.
func TestAUsersChangeLeavesTheConfigurationInForceAlone(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.toml")
	if err := os.WriteFile(users, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.toml")
	conf := "[users]\nfile = \"" + users + "\"\n[backend]\nhost = \"127.0.0.1\"\n" +
		"[[databases]]\nname = \"app\"\nbackend_dbname = \"app_prod\"\nhost = \"::ffff:127.0.0.1\"\n" +
		"[[databases]]\nname = \"v6\"\nbackend_dbname = \"v6_prod\"\nhost = \"localhost.\"\n" +
		"[[hba]]\nmethod = \"trust\"\n"
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	first, err := Load(cfgPath, authcore.NewHashLimiter(0))
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder(cfgPath, first, authcore.NewHashLimiter(0))
	inForce := h.Current().Config
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := backend.Route(inForce, "alice", nil, backend.Credentials{}, "app_prod"); err == nil {
				t.Error("app_prod reached past its entry")
				return
			}
		}
	}()
	hash, err := authcore.HashPassword("scram-sha-256", "alice-Pass-1")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		_, err := h.UpdateUsers(func(list []*authcore.User) ([]*authcore.User, error) {
			return []*authcore.User{{Name: "alice", Password: hash}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if h.Current().Config == inForce {
		t.Fatal("the change was built on the configuration in force")
	}
}

// An update reads the users afresh, so it puts in force any change made
// elsewhere since the last reload, and the next reload finds nothing new.
// OnUpdate names the users that change revoked, so their sessions end, and
// not those the update itself changes: its caller decides about those
// (the admin console spares the session that made the change).
func TestAnUpdateNamesTheUsersAChangeMadeElsewhereRevoked(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.toml")
	hash := func(pw string) string {
		h, err := authcore.HashPassword("scram-sha-256", pw)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	entries := func(us ...*authcore.User) {
		b, err := authcore.EncodeUsers(us)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(users, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	alice, bob, carol := hash("alice-Pass-1"), hash("bob-Pass-2"), hash("carol-Pass-3")
	entries(&authcore.User{Name: "alice", Password: alice}, &authcore.User{Name: "bob", Password: bob},
		&authcore.User{Name: "carol", Password: carol, Roles: []string{"admin"}})
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte("[users]\nfile = \""+users+"\"\n[[hba]]\nmethod = \"password\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	first, err := Load(cfgPath, authcore.NewHashLimiter(0))
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder(cfgPath, first, authcore.NewHashLimiter(0))
	var got []string
	calls := 0
	h.OnUpdate = func(next *Snapshot, revoked []string) {
		calls++
		got = revoked
		if next != h.Current() {
			t.Error("OnUpdate ran before the new snapshot was in force")
		}
	}
	// Elsewhere: alice gets a new password, carol loses her role.
	entries(&authcore.User{Name: "alice", Password: hash("alice-Pass-NEW")}, &authcore.User{Name: "bob", Password: bob},
		&authcore.User{Name: "carol", Password: carol})
	if _, err := h.UpdateUsers(authcore.PasswordChange("bob", hash("bob-Pass-NEW"))); err != nil {
		t.Fatal(err)
	}
	if calls != 1 || len(got) != 2 || got[0] != "alice" || got[1] != "carol" {
		t.Fatalf("OnUpdate: %d calls, revoked %q; want alice and carol (bob is the update's own)", calls, got)
	}
	// Nothing changed elsewhere since: nothing found.
	if _, err := h.UpdateUsers(authcore.PasswordChange("alice", hash("alice-Pass-3"))); err != nil {
		t.Fatal(err)
	}
	if calls != 2 || len(got) != 0 {
		t.Fatalf("OnUpdate: %d calls, revoked %q; want none", calls, got)
	}
}

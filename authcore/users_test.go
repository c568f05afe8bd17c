package authcore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func mustUsers(t *testing.T, toml string) *Users {
	t.Helper()
	us, err := ParseUsers("users.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	return us
}

func TestUsersFileErrorsNameLineAndKey(t *testing.T) {
	_, err := ParseUsers("users.toml", []byte("[[user]]\nname = \"a\"\n\n[[user]]\nname = \"b\"\npassword = \"plain-secret\"\nshoe_size = 9\n"))
	if err == nil {
		t.Fatal("bad users file accepted")
	}
	msg := err.Error()
	for _, want := range []string{"users.toml:6: user[2].password: user \"b\": unrecognized password hash", "users.toml:7: user.shoe_size: unknown key"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "plain-secret") {
		t.Fatal("the error repeats the password")
	}
	if _, err := ParseUsers("users.toml", []byte("[[user]]\nname = \"a\"\n[[user]]\nname = \"a\"\n")); err == nil {
		t.Fatal("duplicate user accepted")
	}
	// Nor does a syntax error: the decoder quoted the part of an unquoted
	// value it stopped at.
	for _, line := range []string{"password = hunter2-secret", "secret = c2VjcmV0-abc", "backend_password = sesame-open"} {
		_, err := ParseUsers("users.toml", []byte("[[user]]\nname = \"a\"\n"+line+"\n"))
		if err == nil {
			t.Fatalf("%s accepted", line)
		}
		value := strings.TrimSpace(strings.SplitN(line, "=", 2)[1])[:4]
		if strings.Contains(err.Error(), value) || !strings.Contains(err.Error(), "users.toml:3:") {
			t.Errorf("%s: %v", line, err)
		}
	}
}

func TestCheckPasswordReasons(t *testing.T) {
	h, _ := HashPassword(AlgoSCRAM, "right-password")
	us := mustUsers(t, `
[[user]]
name = "ok"
password = "`+h+`"
[[user]]
name = "old"
password = "`+h+`"
valid_until = 2020-01-01T00:00:00Z
[[user]]
name = "off"
password = "`+h+`"
disabled = true
[[user]]
name = "nopw"
`)
	a := NewAuthenticator(us, NewHashLimiter(0))
	ctx := context.Background()
	if u, err := a.CheckPassword(ctx, "ok", "right-password"); err != nil || u.Name != "ok" {
		t.Fatalf("right password: %v", err)
	}
	for _, tc := range []struct {
		user, pw string
		reason   Reason
	}{
		{"ok", "wrong", ReasonWrongPassword},
		{"ok", "", ReasonEmptyPassword},
		{"ghost", "right-password", ReasonUnknownUser},
		{"old", "right-password", ReasonExpired},
		{"off", "right-password", ReasonDisabled},
		{"nopw", "x", ReasonNoPassword},
	} {
		_, err := a.CheckPassword(ctx, tc.user, tc.pw)
		if !errors.Is(err, ErrPasswordFailed) || ReasonOf(err) != string(tc.reason) {
			t.Errorf("%s/%q: got %v, want %s", tc.user, tc.pw, err, tc.reason)
		}
	}
}

// countingHash counts verifications, to see the cache and singleflight work.
type countingHash struct {
	n     atomic.Int32
	delay time.Duration
}

func (c *countingHash) Kind() string { return "counting" }
func (c *countingHash) Verify(pw string) bool {
	c.n.Add(1)
	time.Sleep(c.delay)
	return pw == "good"
}

func TestVerifiedCredentialsAreCachedAndHashedOncePerBurst(t *testing.T) {
	ch := &countingHash{delay: 50 * time.Millisecond}
	us, _ := NewUsers([]*User{{Name: "u", Password: "stored", hash: ch}})
	a := NewAuthenticator(us, NewHashLimiter(1))
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.CheckPassword(context.Background(), "u", "good"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := ch.n.Load(); n != 1 {
		t.Fatalf("a burst of 20 identical logins hashed %d times, want 1", n)
	}
	a.CheckPassword(context.Background(), "u", "good")
	if n := ch.n.Load(); n != 1 {
		t.Fatalf("a cached login hashed again (%d)", n)
	}
	// Failures are never cached.
	a.CheckPassword(context.Background(), "u", "bad")
	a.CheckPassword(context.Background(), "u", "bad")
	if n := ch.n.Load(); n != 3 {
		t.Fatalf("wrong passwords: %d hashes, want 3", n)
	}
	// A new authenticator (a reload) starts with an empty cache.
	b := NewAuthenticator(us, NewHashLimiter(1))
	b.CheckPassword(context.Background(), "u", "good")
	if n := ch.n.Load(); n != 4 {
		t.Fatalf("after reload: %d hashes, want 4", n)
	}
}

func TestHashLimiterBoundsConcurrency(t *testing.T) {
	l := NewHashLimiter(2)
	var cur, max atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Do(context.Background(), func() {
				n := cur.Add(1)
				for {
					m := max.Load()
					if n <= m || max.CompareAndSwap(m, n) {
						break
					}
				}
				time.Sleep(10 * time.Millisecond)
				cur.Add(-1)
			})
		}()
	}
	wg.Wait()
	if max.Load() > 2 {
		t.Fatalf("%d hashes ran at once, limit 2", max.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	full := NewHashLimiter(1)
	full.acquire(context.Background(), "")
	if err := full.Do(ctx, func() {}); err == nil {
		t.Fatal("a canceled wait still ran")
	}
}

// Waiting attempts are served by source in turn: a source with many
// waiting makes another source's one attempt wait for one of its hashes,
// not for all of them; a waiter that leaves gives its turn on.
func TestHashWaitsAreServedBySourceInTurn(t *testing.T) {
	l := NewHashLimiter(1)
	l.acquire(context.Background(), "busy") // the slot is taken
	var mu sync.Mutex
	var order []string
	run := func(src string) chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			l.Do(WithSource(context.Background(), src), func() {
				mu.Lock()
				order = append(order, src)
				mu.Unlock()
			})
		}()
		return done
	}
	waiting := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			l.mu.Lock()
			w := 0
			for _, q := range l.queues {
				w += len(q)
			}
			l.mu.Unlock()
			if w == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d waiters, want %d", w, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	var dones []chan struct{}
	for i := range 5 {
		dones = append(dones, run("attacker"))
		waiting(i + 1)
	}
	// One that leaves while it waits gives its turn on.
	gone, leave := context.WithCancel(WithSource(context.Background(), "leaver"))
	left := make(chan error, 1)
	go func() { left <- l.Do(gone, func() { t.Error("a waiter that left ran") }) }()
	waiting(6)
	leave()
	if err := <-left; err == nil {
		t.Fatal("a waiter that left got no error")
	}
	waiting(5)
	dones = append(dones, run("user"))
	waiting(6)
	l.release()
	for _, d := range dones {
		<-d
	}
	if len(order) != 6 || order[0] != "attacker" || order[1] != "user" {
		t.Fatalf("served in the order %v, want the user's attempt second", order)
	}
	if l.free != 1 || len(l.ring) != 0 || len(l.queues) != 0 {
		t.Fatalf("after all: %d free, ring %v, queues %v", l.free, l.ring, l.queues)
	}
}

func TestThrottleWaitsBeforeTheCheckAndOnlyForThatPair(t *testing.T) {
	th := NewThrottle(10, time.Hour)
	now := time.Unix(1000, 0)
	th.now = func() time.Time { return now }
	ctx := context.Background()
	// No failure yet: no wait.
	if _, err := th.Wait(ctx, "1.2.3.4", "alice", time.Second, 8*time.Second); err != nil {
		t.Fatal(err)
	}
	th.Failure("1.2.3.4", "alice", time.Second, 8*time.Second)
	// The next attempt waits, and a canceled wait ends at once with the
	// context's error (the client left).
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := th.Wait(canceled, "1.2.3.4", "alice", time.Second, 8*time.Second); err == nil {
		t.Fatal("an attempt right after a failure was not held")
	}
	// Another address, or another user, is not held.
	if _, err := th.Wait(canceled, "5.6.7.8", "alice", time.Second, 8*time.Second); err != nil {
		t.Fatal("another address was held up")
	}
	if _, err := th.Wait(canceled, "1.2.3.4", "bob", time.Second, 8*time.Second); err != nil {
		t.Fatal("another user was held up")
	}
	// Once the backoff has passed, one attempt goes ahead and one beside
	// it waits a further backoff.
	now = now.Add(time.Second)
	if _, err := th.Wait(canceled, "1.2.3.4", "alice", time.Second, 8*time.Second); err != nil {
		t.Fatal("the attempt after the backoff was held")
	}
	if _, err := th.Wait(canceled, "1.2.3.4", "alice", time.Second, 8*time.Second); err == nil {
		t.Fatal("a parallel attempt went ahead at once")
	}
	// A success lets the next attempt through at once.
	th.Success("1.2.3.4", "alice")
	if _, err := th.Wait(canceled, "1.2.3.4", "alice", time.Second, 8*time.Second); err != nil {
		t.Fatal("a success did not reset the wait")
	}
}

func TestThrottleDoublesUpToMaxAndResets(t *testing.T) {
	th := NewThrottle(10, time.Hour)
	var got []time.Duration
	for i := 0; i < 6; i++ {
		got = append(got, th.Failure("1.2.3.4", "alice", time.Second, 5*time.Second))
	}
	want := []time.Duration{1, 2, 4, 5, 5, 5}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("delays %v, want %v seconds", got, want)
		}
	}
	if d := th.Failure("1.2.3.4", "bob", time.Second, 5*time.Second); d != time.Second {
		t.Fatalf("another user shares alice's count: %v", d)
	}
	th.Success("1.2.3.4", "alice")
	if d := th.Failure("1.2.3.4", "alice", time.Second, 5*time.Second); d != time.Second {
		t.Fatalf("success did not reset: %v", d)
	}
	// Bounded: many sources never grow the table past its limit.
	for i := 0; i < 100; i++ {
		th.Failure("10.0.0.1", strings.Repeat("x", i), time.Second, time.Second)
	}
	if len(th.entries) > 10 {
		t.Fatalf("throttle table grew to %d", len(th.entries))
	}
}

func TestChangePasswordRotatesTheSecretAndKeepsTheRest(t *testing.T) {
	path := t.TempDir() + "/users.toml"
	old, secret := mustHash(t, "old-password"), NewSecret()
	err := UpdateUsersFile(path, func([]*User) ([]*User, error) {
		return []*User{{Name: "alice", Password: old, Secret: secret, Roles: []string{"admin"}, BackendUser: "app_rw"}, {Name: "bob"}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	next := mustHash(t, "new-password")
	if err := UpdateUsersFile(path, PasswordChange("alice", next)); err != nil {
		t.Fatal(err)
	}
	us, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	a := us.Lookup("alice")
	if a.Password != next || a.Secret == secret || a.Secret == "" || !a.HasRole("admin") || a.BackendUser != "app_rw" || us.Lookup("bob") == nil {
		t.Fatalf("after the change: %+v", a)
	}
	// A user without a secret gets none: tokens were never issued.
	if err := UpdateUsersFile(path, PasswordChange("bob", next)); err != nil {
		t.Fatal(err)
	}
	if us, err = LoadUsers(path); err != nil || us.Lookup("bob").Secret != "" || us.Lookup("bob").Password != next {
		t.Fatalf("bob after the change: %v %+v", err, us.Lookup("bob"))
	}
	if err := UpdateUsersFile(path, PasswordChange("carol", next)); !errors.Is(err, ErrNoSuchUser) {
		t.Fatalf("changing a missing user: %v", err)
	}
}

func mustHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := HashPassword(AlgoSCRAM, pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestRevokedNamesUsersWhoseLoginNoLongerHolds(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Hour), now.Add(time.Hour)
	base := func(name string) *User {
		return &User{Name: name, Password: "h-" + name, Secret: "s", Roles: []string{"admin", "ops"}, JWT: &UserJWT{Iss: "i", Username: name}}
	}
	var old, next []*User
	changes := map[string]func(*User){
		"same":          func(*User) {},
		"later":         func(u *User) { u.ValidUntil = &future },
		"gainsRole":     func(u *User) { u.Roles = append(u.Roles, "more") },
		"noSecret":      func(u *User) {}, // its first secret, below
		"noPassword":    func(u *User) {}, // its first password
		"noJWT":         func(u *User) {}, // its first external identity
		"dropsPassword": func(u *User) { u.Password = "" },
		"password":      func(u *User) { u.Password = "other" },
		"secret":        func(u *User) { u.Secret = "other" },
		"disabled":      func(u *User) { u.Disabled = true },
		"expired":       func(u *User) { u.ValidUntil = &past },
		"backend":       func(u *User) { u.BackendUser = "other" },
		"jwt":           func(u *User) { u.JWT = &UserJWT{Iss: "i", Username: "else"} },
		"nojwt":         func(u *User) { u.JWT = nil },
		"losesRole":     func(u *User) { u.Roles = []string{"ops"} },
	}
	for name, change := range changes {
		o := base(name)
		switch name {
		case "noSecret":
			o.Secret = ""
		case "noPassword":
			o.Password = ""
		case "noJWT":
			o.JWT = nil
		}
		old = append(old, o)
		u := base(name)
		change(u)
		next = append(next, u)
	}
	old = append(old, base("removed"))
	oldUsers, err := NewUsers(old)
	if err != nil {
		t.Fatal(err)
	}
	nextUsers, err := NewUsers(append(next, base("added")))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, n := range Revoked(oldUsers, nextUsers, now) {
		got[n] = true
	}
	for _, keep := range []string{"same", "later", "gainsRole", "added", "noSecret", "noPassword", "noJWT"} {
		if got[keep] {
			t.Errorf("%s revoked", keep)
		}
	}
	for _, end := range []string{"dropsPassword", "password", "secret", "disabled", "expired", "backend", "jwt", "nojwt", "losesRole", "removed"} {
		if !got[end] {
			t.Errorf("%s not revoked", end)
		}
	}
}

// Keys are case-sensitive, as TOML says: the decoder would fill roles
// from Roles, and take the later of the two, so roles = [] followed by
// Roles = ["admin"] made an admin of a user whose file said otherwise.
func TestUsersFileKeysInAnotherCaseAreErrors(t *testing.T) {
	_, err := ParseUsers("users.toml", []byte("[[user]]\nname = \"alice\"\nroles = []\nRoles = [\"admin\"]\n"))
	if err == nil || !strings.Contains(err.Error(), "users.toml:4: user.Roles: unknown key; keys are case-sensitive: write roles") {
		t.Fatalf("Roles beside roles: %v", err)
	}
	_, err = ParseUsers("users.toml", []byte("[[User]]\nname = \"alice\"\n"))
	if err == nil || !strings.Contains(err.Error(), "User: unknown key; keys are case-sensitive: write user") || strings.Count(err.Error(), "case-sensitive") != 1 {
		t.Fatalf("[[User]]: %v", err)
	}
}

// A name with a control character, or bytes that are not UTF-8, is a load
// error at its line, wherever the users come from.
func TestUserNamesWithControlCharactersAreErrors(t *testing.T) {
	for _, name := range []string{`alice\nbob`, `a\u0000b`, `tab\tname`, `esc\u001b[31m`} {
		_, err := ParseUsers("users.toml", []byte("[[user]]\nname = \"ok\"\n[[user]]\nname = \""+name+"\"\n"))
		if err == nil || !strings.Contains(err.Error(), "users.toml:4: user[2].name: user name") || !strings.Contains(err.Error(), "control character") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := NewUsers([]*User{{Name: "a\nb"}}); err == nil {
		t.Error("NewUsers took a name with a newline")
	}
	mustUsers(t, "[[user]]\nname = \"Zoë O'Brien-Smith\"\n")
}

func TestThrottleCountsAnIPv6NetworkAsOneSource(t *testing.T) {
	th := NewThrottle(10, time.Hour)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	th.Failure("2001:db8:1:2::1", "alice", time.Second, 8*time.Second)
	// Another address of the same /64 (a host's own pick), its zoned and
	// its written-out forms: the same source.
	for _, addr := range []string{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::1%eth0", "2001:0db8:0001:0002:0000:0000:0000:0009"} {
		if _, err := th.Wait(canceled, addr, "alice", time.Second, 8*time.Second); err == nil {
			t.Fatalf("%s is in the failing /64 but was not held", addr)
		}
	}
	// The next /64, and IPv4 (also written as IPv6), are other sources.
	for _, addr := range []string{"2001:db8:1:3::1", "192.0.2.1", "::ffff:192.0.2.1"} {
		done, err := th.Wait(canceled, addr, "alice", time.Second, 8*time.Second)
		if err != nil {
			t.Fatalf("%s was held by another network's failure", addr)
		}
		done() // its check ended with no outcome: the pair is free again
	}
	// An IPv4 address is one source whichever way it is written.
	th.Failure("::ffff:192.0.2.1", "alice", time.Second, 8*time.Second)
	if _, err := th.Wait(canceled, "192.0.2.1", "alice", time.Second, 8*time.Second); err == nil {
		t.Fatal("192.0.2.1 written as IPv6 and as IPv4 are two sources")
	}
	// ipv6_prefix = 128: each address on its own.
	th.SetIPv6Prefix(128)
	if _, err := th.Wait(canceled, "2001:db8:1:2::2", "alice", time.Second, 8*time.Second); err != nil {
		t.Fatal("with a /128 prefix another address was held")
	}
}

func TestAFullThrottleTableDropsThrowawayNamesNotTheGuessedOne(t *testing.T) {
	const size = 1000
	th := NewThrottle(size, time.Hour)
	now := time.Unix(1000, 0)
	th.now = func() time.Time { return now }
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	// The name being guessed has failed three times.
	for range 3 {
		th.Failure("192.0.2.1", "alice", time.Second, 30*time.Second)
		now = now.Add(time.Microsecond)
	}
	// Then the guesser fails ten tables' worth of throwaway names, each
	// once, hoping to push alice's record out.
	for i := range 10 * size {
		th.Failure("192.0.2.1", fmt.Sprintf("junk%d", i), time.Second, 30*time.Second)
		now = now.Add(time.Microsecond)
	}
	if len(th.entries) > size {
		t.Fatalf("the table grew to %d", len(th.entries))
	}
	if _, err := th.Wait(canceled, "192.0.2.1", "alice", time.Second, 30*time.Second); err == nil {
		t.Fatal("throwaway names wiped the record of the guessed name: its next guess went ahead at once")
	}
}

func TestAUserNameOverTheBoundIsRefusedWhereverUsersComeFrom(t *testing.T) {
	if err := CheckUserName(strings.Repeat("a", MaxNameBytes)); err != nil {
		t.Fatalf("a name at the bound: %v", err)
	}
	err := CheckUserName(strings.Repeat("a", MaxNameBytes+1))
	if err == nil || !strings.Contains(err.Error(), "is 257 bytes, over pgwarden's limit of 256") {
		t.Fatalf("a name over the bound: %v", err)
	}
}

// A login that joined another's hash of the same credentials is not
// dropped when that other login's client leaves before the hash ran: it
// waits for the hash itself.
func TestALoginSharingAHashOutlivesTheClientThatStartedIt(t *testing.T) {
	ch := &countingHash{}
	us, _ := NewUsers([]*User{{Name: "u", Password: "stored", hash: ch}})
	l := NewHashLimiter(1)
	a := NewAuthenticator(us, l)
	l.acquire(context.Background(), "busy") // every slot is taken
	waiters := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		n := 0
		for _, q := range l.queues {
			n += len(q)
		}
		return n
	}
	gone, leave := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := a.CheckPassword(gone, "u", "good")
		first <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); waiters() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first login never waited for the hash")
		}
	}
	second := make(chan error, 1)
	go func() {
		_, err := a.CheckPassword(context.Background(), "u", "good")
		second <- err
	}()
	time.Sleep(50 * time.Millisecond) // the second joins the first's hash
	leave()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("the login whose client left: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); waiters() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second login did not wait for the hash in turn itself")
		}
	}
	l.release()
	if err := <-second; err != nil {
		t.Fatalf("the login still waiting was dropped with its companion: %v", err)
	}
}

// A token secret that could sign no token (not base64, under 32 bytes) is
// an error of the users file, named by line, as a bad hash is: stored, it
// failed only at the first token, and a short one would have made the
// user's tokens open to an offline guess. The error does not repeat it.
func TestATokenSecretTooShortToSignIsAnError(t *testing.T) {
	for _, secret := range []string{"a", "c2hvcnQ=", strings.Repeat("QUJD", 10), "not base64 at all but long enough to pass a length check"} {
		_, err := ParseUsers("users.toml", []byte("[[user]]\nname = \"a\"\n\n[[user]]\nname = \"b\"\nsecret = \""+secret+"\"\n"))
		if err == nil || !strings.Contains(err.Error(), `users.toml:6: user[2].secret: user "b": a token secret must be base64 of at least 32 bytes`) {
			t.Fatalf("secret %q: %v", secret, err)
		}
		if len(secret) > 4 && strings.Contains(err.Error(), secret) {
			t.Fatal("the error repeats the secret")
		}
	}
	if _, err := ParseUsers("users.toml", []byte("[[user]]\nname = \"b\"\nsecret = \""+NewSecret()+"\"\n")); err != nil {
		t.Fatal(err)
	}
}

// A password change made on the strength of the old password is refused
// when the file holds another by the time it is written (an admin's reset
// in between), and leaves the file as the reset left it.
func TestAPasswordChangeFromAPasswordResetMeanwhileIsRefused(t *testing.T) {
	path := t.TempDir() + "/users.toml"
	proven, reset, thief := mustHash(t, "old-password"), mustHash(t, "reset-password"), mustHash(t, "thief-password")
	if err := UpdateUsersFile(path, func([]*User) ([]*User, error) { return []*User{{Name: "alice", Password: proven}}, nil }); err != nil {
		t.Fatal(err)
	}
	if err := UpdateUsersFile(path, PasswordChange("alice", reset)); err != nil {
		t.Fatal(err)
	}
	if err := UpdateUsersFile(path, PasswordChangeFrom("alice", proven, thief)); !errors.Is(err, ErrPasswordChangedMeanwhile) {
		t.Fatalf("a change from the password the reset replaced: %v", err)
	}
	if us, err := LoadUsers(path); err != nil || us.Lookup("alice").Password != reset {
		t.Fatalf("after the refused change: %v", err)
	}
	if err := UpdateUsersFile(path, PasswordChangeFrom("alice", reset, thief)); err != nil {
		t.Fatalf("a change from the password in force: %v", err)
	}
}

// Attempts of a pair with no recent success are checked one at a time:
// the one that goes ahead holds the others until its outcome, for at most
// the base delay. A proven pair is not held.
func TestThrottleChecksAnUnprovenPairsAttemptsOneAtATime(t *testing.T) {
	th := NewThrottle(10, time.Hour)
	now := time.Unix(1000, 0)
	th.now = func() time.Time { return now }
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	const base, max = time.Second, 8 * time.Second
	wait := func(user string) (func(), error) { return th.Wait(canceled, "192.0.2.1", user, base, max) }

	// The first goes ahead; one beside it waits for its outcome.
	done, err := wait("alice")
	if err != nil {
		t.Fatal("the first attempt of a fresh pair was held")
	}
	if _, err := wait("alice"); err == nil {
		t.Fatal("an attempt beside the first one went ahead before its outcome")
	}
	// Ended without an outcome (its client left): the next goes ahead,
	// and holds in turn.
	done()
	if done, err = wait("alice"); err != nil {
		t.Fatal("the first attempt's end did not free the pair")
	}
	if _, err := wait("alice"); err == nil {
		t.Fatal("the second attempt did not hold the others")
	}
	// A failure starts the backoff.
	th.Failure("192.0.2.1", "alice", base, max)
	done()
	if _, err := wait("alice"); err == nil {
		t.Fatal("an attempt right after the failure went ahead")
	}
	// A success lets every attempt go ahead together.
	now = now.Add(base)
	if done, err = wait("alice"); err != nil {
		t.Fatal("the attempt after the backoff was held")
	}
	th.Success("192.0.2.1", "alice")
	done() // after the outcome: changes nothing
	for range 3 {
		if _, err := wait("alice"); err != nil {
			t.Fatal("a proven pair's attempts were held")
		}
	}
	// A holder that stalls holds the others for base at most.
	if _, err := wait("bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := wait("bob"); err == nil {
		t.Fatal("bob's second attempt went ahead beside the first")
	}
	now = now.Add(base)
	if _, err := wait("bob"); err != nil {
		t.Fatal("a stalled holder held the pair past base")
	}
	// A success long ago proves nothing any more.
	th.Success("192.0.2.1", "carol")
	now = now.Add(2 * time.Hour)
	if _, err := wait("carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := wait("carol"); err == nil {
		t.Fatal("a success forgotten long ago still let attempts go ahead together")
	}
}

// An attempt waiting for the one being checked goes ahead as soon as that
// one succeeds, not when the hold would have ended.
func TestAWaitingAttemptGoesAheadAtTheSuccessItWaitedFor(t *testing.T) {
	th := NewThrottle(10, time.Hour)
	done, err := th.Wait(context.Background(), "192.0.2.1", "alice", time.Hour, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	went := make(chan error, 1)
	go func() {
		_, err := th.Wait(context.Background(), "192.0.2.1", "alice", time.Hour, time.Hour)
		went <- err
	}()
	select {
	case <-went:
		t.Fatal("the second attempt went ahead beside the first")
	case <-time.After(50 * time.Millisecond):
	}
	th.Success("192.0.2.1", "alice")
	select {
	case err := <-went:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting attempt was not woken by the success")
	}
}

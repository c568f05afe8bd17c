package httpfront

import (
	"github.com/pgwarden/pgwarden/authcore"
	"strings"
	"sync"
	"testing"
	"time"
)

var testLimits = SessionLimits{Idle: 10 * time.Minute, Absolute: time.Hour}

func TestASessionLivesUntilItsIdleOrAbsoluteTimeout(t *testing.T) {
	s := NewSessions(100, 10)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	id, sess := s.Create(&authcore.User{Name: "alice"}, t0)
	if !WellFormedSessionID(id) || sess.User != "alice" || len(sess.CSRF) < 40 {
		t.Fatalf("id %q session %+v", id, sess)
	}
	// Used every 9 minutes, it outlives the idle timeout...
	now := t0
	for now.Sub(t0) < 54*time.Minute {
		now = now.Add(9 * time.Minute)
		if _, ok := s.Get(id, testLimits, now); !ok {
			t.Fatalf("session ended after %v of regular use", now.Sub(t0))
		}
	}
	// ...but not the absolute one.
	if _, ok := s.Get(id, testLimits, t0.Add(time.Hour)); ok {
		t.Fatal("session outlived its absolute timeout")
	}
	if s.Len() != 0 {
		t.Fatal("an expired session stays stored")
	}
	id, _ = s.Create(&authcore.User{Name: "alice"}, t0)
	if _, ok := s.Get(id, testLimits, t0.Add(10*time.Minute)); ok {
		t.Fatal("session outlived its idle timeout")
	}
}

func TestEverySessionIDIsNewAndUnrelatedToTheUser(t *testing.T) {
	s := NewSessions(1000, 1000)
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		id, sess := s.Create(&authcore.User{Name: "alice"}, time.Now())
		if seen[id] || seen[sess.CSRF] || strings.Contains(id, "alice") {
			t.Fatalf("id %q repeats or names its user", id)
		}
		seen[id], seen[sess.CSRF] = true, true
	}
}

func TestUnknownMalformedAndDeletedIDsFindNothing(t *testing.T) {
	s := NewSessions(10, 10)
	now := time.Now()
	id, _ := s.Create(&authcore.User{Name: "alice"}, now)
	for _, bad := range []string{"", "x", id[:len(id)-1], id + "A", strings.Repeat("A", SessionIDLen), id[:10] + "!" + id[11:]} {
		if _, ok := s.Get(bad, testLimits, now); ok {
			t.Fatalf("id %q found a session", bad)
		}
	}
	s.Delete(id)
	if _, ok := s.Get(id, testLimits, now); ok {
		t.Fatal("a deleted session is still found")
	}
}

func TestAPasswordChangeDisableOrRemovalEndsTheSession(t *testing.T) {
	now := time.Now()
	alice := mustUsers(t, "[[user]]\nname = \"alice\"\npassword = \""+mustHash(t, "old-password")+"\"\n").Lookup("alice")
	s := NewSessions(10, 10)
	_, sess := s.Create(alice, now)
	if !sess.HeldBy(alice, now) {
		t.Fatal("a fresh session is not held by its user")
	}
	changed := *alice
	changed.Password = mustHash(t, "new-password")
	disabled := *alice
	disabled.Disabled = true
	past := now.Add(-time.Minute)
	expired := *alice
	expired.ValidUntil = &past
	other := *alice
	other.Name = "bob"
	for name, u := range map[string]*authcore.User{"changed password": &changed, "disabled": &disabled, "expired": &expired, "removed": nil, "another user": &other} {
		if sess.HeldBy(u, now) {
			t.Errorf("%s: the session still holds", name)
		}
	}
	// A role change or a new token secret leaves the session alone.
	promoted := *alice
	promoted.Roles = []string{"admin"}
	promoted.Secret = authcore.NewSecret()
	if !sess.HeldBy(&promoted, now) {
		t.Fatal("a role or secret change ended the session")
	}
}

func TestSweepAndEndUserRemoveExactlyTheirSessions(t *testing.T) {
	s := NewSessions(100, 100)
	now := time.Now()
	for i := 0; i < 3; i++ {
		s.Create(&authcore.User{Name: "alice"}, now)
		s.Create(&authcore.User{Name: "bob"}, now)
	}
	old, _ := s.Create(&authcore.User{Name: "carol"}, now.Add(-time.Hour))
	if n := s.EndUser("alice"); n != 3 {
		t.Fatalf("EndUser ended %d sessions, want 3", n)
	}
	n := s.Sweep(testLimits, now, func(x Session) bool { return x.User != "bob" || x.CSRF == "" })
	if n != 4 || s.Len() != 0 {
		t.Fatalf("Sweep removed %d, %d left", n, s.Len())
	}
	if _, ok := s.Get(old, testLimits, now); ok {
		t.Fatal("swept session found")
	}
}

func TestOneUsersLoginsCannotPushOthersOut(t *testing.T) {
	s := NewSessions(10, 3)
	now := time.Now()
	bob, _ := s.Create(&authcore.User{Name: "bob"}, now)
	var alice []string
	for i := 0; i < 20; i++ {
		id, _ := s.Create(&authcore.User{Name: "alice"}, now.Add(time.Duration(i+1)*time.Second))
		alice = append(alice, id)
	}
	if _, ok := s.Get(bob, testLimits, now); !ok {
		t.Fatal("alice's logins ended bob's session")
	}
	// alice keeps her three most recent sessions.
	for i, id := range alice {
		_, ok := s.Get(id, testLimits, now.Add(time.Minute))
		if ok != (i >= 17) {
			t.Fatalf("alice's session %d live = %v", i, ok)
		}
	}
	// The total bound ends the least recently used session of anyone.
	for i := 0; i < 10; i++ {
		s.Create(&authcore.User{Name: string(rune('c' + i))}, now.Add(time.Hour))
	}
	if s.Len() != 10 {
		t.Fatalf("%d sessions stored, bound is 10", s.Len())
	}
}

func TestCSRFTokensCompareExactly(t *testing.T) {
	_, sess := NewSessions(1, 1).Create(&authcore.User{Name: "alice"}, time.Now())
	for _, bad := range []string{"", sess.CSRF[:len(sess.CSRF)-1], sess.CSRF + "x", strings.ToUpper(sess.CSRF)} {
		if bad != sess.CSRF && sess.CheckCSRF(bad) {
			t.Fatalf("CSRF token %q accepted", bad)
		}
	}
	if !sess.CheckCSRF(sess.CSRF) {
		t.Fatal("the session's own CSRF token refused")
	}
}

func TestSessionsAreSafeForConcurrentUse(t *testing.T) {
	s := NewSessions(50, 5)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				now := time.Now()
				id, _ := s.Create(&authcore.User{Name: string(rune('a' + g%3))}, now)
				s.Get(id, testLimits, now)
				if i%7 == 0 {
					s.EndUser("a")
				}
				if i%11 == 0 {
					s.Sweep(testLimits, now, func(Session) bool { return true })
				}
				s.Delete(id)
			}
		}(g)
	}
	wg.Wait()
}

func TestTheSetupTokenWorksOnceAndOnlyAsItself(t *testing.T) {
	tok := NewSetupToken()
	v := tok.Value()
	if len(v) < 43 || !tok.Pending() {
		t.Fatalf("token %q", v)
	}
	if tok.Check("") || tok.Check(v[:len(v)-1]) || tok.Check(v+"x") || !tok.Check(v) {
		t.Fatal("Check accepts the wrong token or refuses the right one")
	}
	tok.Spend()
	if tok.Check(v) || tok.Pending() || tok.Value() != "" {
		t.Fatal("a spent token still works")
	}
	var none *SetupToken
	if none.Check("") || none.Pending() {
		t.Fatal("no token matches something")
	}
}

func mustHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := authcore.HashPassword(authcore.AlgoSCRAM, pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mustUsers(t *testing.T, toml string) *authcore.Users {
	t.Helper()
	us, err := authcore.ParseUsers("users.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	return us
}

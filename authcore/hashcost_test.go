package authcore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestAUsersFileHashOverTheCostBoundIsRefusedWithItsLine(t *testing.T) {
	costly := NewSCRAMVerifier("pw", 200_000).String()
	us := mustUsers(t, "[[user]]\nname = \"ok\"\npassword = \""+mustHash(t, "pw")+"\"\n\n[[user]]\nname = \"slow\"\npassword = \""+costly+"\"\n")
	err := us.CheckHashCost("users.toml", DefaultHashLimits)
	if err == nil || !strings.Contains(err.Error(), "users.toml:7:") || !strings.Contains(err.Error(), "max_scram_iterations") {
		t.Fatalf("want users.toml:7 naming max_scram_iterations, got %v", err)
	}
	if strings.Contains(err.Error(), costly) {
		t.Fatal("the error quotes the hash")
	}
	raised := DefaultHashLimits
	raised.SCRAMIterations = 300_000
	if err := us.CheckHashCost("users.toml", raised); err != nil {
		t.Fatalf("a raised limit still refuses: %v", err)
	}
}

func TestHashCostBoundsCoverEveryKind(t *testing.T) {
	l := HashLimits{SCRAMIterations: 4096, PBKDF2Iterations: 1000, BcryptCost: 10, Argon2MemoryKiB: 1024, Argon2Time: 2}
	b11, _ := bcrypt.GenerateFromPassword([]byte("pw"), 11)
	for _, c := range []struct {
		hash string
		over bool
	}{
		{NewSCRAMVerifier("pw", 4096).String(), false},
		{NewSCRAMVerifier("pw", 4097).String(), true},
		{"$pbkdf2-sha512$1000$c2FsdHNhbHRzYWx0$" + strings.Repeat("A", 86), false},
		{"$pbkdf2-sha512$1001$c2FsdHNhbHRzYWx0$" + strings.Repeat("A", 86), true},
		{string(b11), true},
		{"$argon2id$v=19$m=1024,t=2,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 43), false},
		{"$argon2id$v=19$m=2048,t=2,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 43), true},
		{"$argon2id$v=19$m=1024,t=3,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 43), true},
	} {
		h, err := ParseHash(c.hash)
		if err != nil {
			t.Fatalf("%s: %v", c.hash[:14], err)
		}
		if got := l.Check(h) != nil; got != c.over {
			t.Errorf("%s: over the bound %v, want %v", c.hash[:20], got, c.over)
		}
	}
}

// fakeStore is an auth_query in lookup mode that hands out one hash.
type fakeStore struct{ hash string }

func (f fakeStore) User(_ context.Context, name string) (*User, error) {
	return NewExternalUser(name, f.hash, nil)
}
func (f fakeStore) Verify(context.Context, string, string) (bool, bool, error) {
	return false, false, nil
}
func (f fakeStore) Roles(context.Context, string) ([]string, error) { return nil, nil }

func TestAnExternalHashOverTheCostBoundFailsLikeAWrongPasswordWithoutTheWork(t *testing.T) {
	us := mustUsers(t, "")
	a := NewAuthenticator(us, NewHashLimiter(1)).WithExternal(fakeStore{NewSCRAMVerifier("right", 200_000).String()})
	start := time.Now()
	_, err := a.CheckPassword(context.Background(), "mallory", "right")
	if !errors.Is(err, ErrPasswordFailed) || !strings.Contains(ReasonOf(err), "max_scram_iterations") {
		t.Fatalf("want a password failure naming the bound, got %v", err)
	}
	t.Logf("refused in %v", time.Since(start))
	// The SCRAM exchange refuses it too.
	s, err := a.StartSCRAM(context.Background(), "mallory", MechSCRAM, nil)
	if err != nil || !strings.Contains(string(s.doomed), "max_scram_iterations") {
		t.Fatalf("SCRAM with a costly stored verifier: %v %q", err, s.doomed)
	}
}

func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

// knownAndUnknownMedians times rounds password checks of known and as
// many of names nobody has, alternating, and returns the median of each;
// check judges every answer.
func knownAndUnknownMedians(a *Authenticator, known, password string, rounds int, check func(name string, err error)) (k, u time.Duration) {
	var knownTimes, unknownTimes []time.Duration
	for i := 0; i < rounds; i++ {
		for _, c := range []struct {
			name string
			into *[]time.Duration
		}{{known, &knownTimes}, {fmt.Sprintf("nobody-%d", i), &unknownTimes}} {
			start := time.Now()
			_, err := a.CheckPassword(context.Background(), c.name, password)
			*c.into = append(*c.into, time.Since(start))
			check(c.name, err)
		}
	}
	return median(knownTimes), median(unknownTimes)
}

func TestUnknownUsersCostWhatTheUsersHashesCost(t *testing.T) {
	// Every user has a bcrypt hash at cost 8: an unknown name must cost
	// about that much too, not a cheap SCRAM check.
	b, _ := bcrypt.GenerateFromPassword([]byte("right-password"), 8)
	us := mustUsers(t, "[[user]]\nname = \"alice\"\npassword = \""+string(b)+"\"\n[[user]]\nname = \"bob\"\npassword = \""+string(b)+"\"\n")
	a := NewAuthenticator(us, NewHashLimiter(1))
	k, u := knownAndUnknownMedians(a, "alice", "wrong-password", 5, func(name string, err error) {
		if !errors.Is(err, ErrPasswordFailed) {
			t.Fatal(err)
		}
	})
	if u < k/2 || u > k*2 {
		t.Fatalf("median wrong-password time: known bcrypt user %v, unknown user %v", k, u)
	}
	t.Logf("median: known %v, unknown %v", k, u)
}

// slowVerifyStore is a verify-mode store whose every check takes a while,
// as a pgcrypto crypt() in the database does; it records who it served.
type slowVerifyStore struct {
	mu      sync.Mutex
	served  []string
	running int
	most    int
}

func (s *slowVerifyStore) User(context.Context, string) (*User, error) { return nil, nil }
func (s *slowVerifyStore) Roles(context.Context, string) ([]string, error) {
	return nil, nil
}
func (s *slowVerifyStore) Verify(_ context.Context, name, _ string) (bool, bool, error) {
	s.mu.Lock()
	s.running++
	s.most = max(s.most, s.running)
	s.served = append(s.served, name)
	s.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	s.mu.Lock()
	s.running--
	s.mu.Unlock()
	return false, true, nil
}

// The store's lookups are served by source in turn, two at a time (its
// pool's connections): one source's flood of made-up names does not make
// another source's lookup wait behind all of it.
func TestStoreLookupsAreServedBySourceInTurn(t *testing.T) {
	store := &slowVerifyStore{}
	a := NewAuthenticator(mustUsers(t, ""), NewHashLimiter(1)).WithExternal(store)
	var wg sync.WaitGroup
	check := func(src, name string) {
		defer wg.Done()
		a.CheckPassword(WithSource(context.Background(), src), name, "pw")
	}
	for i := range 12 {
		wg.Add(1)
		go check("203.0.113.1", fmt.Sprintf("guess%d", i))
	}
	time.Sleep(30 * time.Millisecond) // the guesses are running and waiting
	wg.Add(1)
	go check("198.51.100.7", "alice")
	wg.Wait()
	i := slices.Index(store.served, "alice")
	if i < 0 || i > 5 || store.most > externalLookups {
		t.Fatalf("alice was looked up %d-th of %d (at most %d at once): %v", i+1, len(store.served), store.most, store.served)
	}
}

func TestAnEmptyPasswordCostsTheSameForKnownAndUnknownUsers(t *testing.T) {
	// PostgreSQL refuses an empty password before it looks the user up;
	// a check that hashed a decoy for unknown names only would tell
	// them apart by time.
	b, _ := bcrypt.GenerateFromPassword([]byte("right-password"), 8)
	us := mustUsers(t, "[[user]]\nname = \"alice\"\npassword = \""+string(b)+"\"\n")
	a := NewAuthenticator(us, NewHashLimiter(1))
	k, u := knownAndUnknownMedians(a, "alice", "", 7, func(name string, err error) {
		if !errors.Is(err, ErrPasswordFailed) || ReasonOf(err) != string(ReasonEmptyPassword) {
			t.Fatalf("%s with an empty password: %v (%s)", name, err, ReasonOf(err))
		}
	})
	t.Logf("median: known %v, unknown %v", k, u)
	if u > 4*k+time.Millisecond || k > 4*u+time.Millisecond {
		t.Fatalf("an empty password tells known from unknown users: known %v, unknown %v", k, u)
	}
}

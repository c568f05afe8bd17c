package backend

import (
	"context"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/config"
)

// At max_backend_connections a login waits its turn for a release: a
// backend parked (which it then takes), closed, or a reservation given
// back. A release between the login's refusal and its wait is not missed.
// The wait ends at its deadline or when the login's context does.
func TestALoginAtTheLimitWaitsForARelease(t *testing.T) {
	p := NewPool()
	l := PoolLimits{PerKey: 5, Max: 1, IdleTimeout: time.Minute}
	key := Key{}
	if err := p.Reserve(l); err != nil {
		t.Fatal(err)
	}
	c1, c2 := net.Pipe()
	defer c2.Close()
	s := &Session{Conn: c1, Key: key, Created: time.Now()}
	if err := p.Reserve(l); err != ErrTooManyBackends {
		t.Fatalf("second reservation at a limit of 1: %v", err)
	}
	w := p.queue(nil)
	if st := p.Stats(); st.Waiting != 1 {
		t.Fatalf("waiting %d, want 1", st.Waiting)
	}
	if p.WaitTurn(context.Background(), w, time.Now().Add(50*time.Millisecond)) {
		t.Fatal("nothing was released: the wait did not end at its deadline")
	}
	if st := p.Stats(); st.Waiting != 0 {
		t.Fatalf("waiting %d after the deadline, want 0", st.Waiting)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if p.WaitTurn(ctx, p.queue(nil), time.Now().Add(5*time.Second)) {
		t.Fatal("the client left: the wait did not end")
	}

	// The backend is parked after the login queued, before it waits.
	w = p.queue(nil)
	p.Put(s, l, time.Now())
	if !p.WaitTurn(context.Background(), w, time.Now().Add(5*time.Second)) {
		t.Fatal("a backend parked between the queueing and the wait was missed")
	}
	if got := p.Get(key, l, time.Now()); got != s {
		t.Fatalf("the parked backend was not handed out: %v", got)
	}

	// In use again; a session ending (Discard) wakes a waiting login,
	// which then gets the slot.
	w = p.queue(nil)
	go func() {
		time.Sleep(50 * time.Millisecond)
		p.Discard(s)
	}()
	if !p.WaitTurn(context.Background(), w, time.Now().Add(5*time.Second)) {
		t.Fatal("a session ended: the waiting login was not woken")
	}
	if err := p.Reserve(l); err != nil {
		t.Fatalf("after the release: %v", err)
	}
	w = p.queue(nil)
	p.Release()
	if !p.WaitTurn(context.Background(), w, time.Now().Add(5*time.Second)) {
		t.Fatal("a reservation given back did not wake a waiting login")
	}
	if st := p.Stats(); st.InUse != 0 || st.Parked != 0 || st.Waiting != 0 {
		t.Fatalf("at the end: %+v", st)
	}
}

// Each release wakes one login, the first in line; a turn its login does
// not use (it left, or got room without waiting) goes to the next, and one
// that found its room taken waits at the front again.
func TestLoginsAtTheLimitAreServedInTurn(t *testing.T) {
	p := NewPool()
	l := PoolLimits{PerKey: 5, Max: 1, IdleTimeout: time.Minute}
	if err := p.Reserve(l); err != nil {
		t.Fatal(err)
	}
	a, b, c := p.queue(nil), p.queue(nil), p.queue(nil)
	woken := func(w *Waiter) bool {
		return p.WaitTurn(context.Background(), w, time.Now().Add(30*time.Millisecond))
	}
	p.Release() // one slot: a's turn, not b's or c's
	if !woken(a) {
		t.Fatal("the first in line was not woken")
	}
	if st := p.Stats(); st.Waiting != 2 {
		t.Fatalf("%d waiting after one wake-up, want 2", st.Waiting)
	}
	// a does not use it: b gets it.
	p.PassTurn()
	if !woken(b) {
		t.Fatal("a turn passed on did not reach the next in line")
	}
	// b finds the room taken by a login that did not wait: back at the front.
	if err := p.Reserve(l); err != nil {
		t.Fatal(err)
	}
	b = p.queue(b)
	p.Release()
	if !woken(b) {
		t.Fatal("a login whose room was taken lost its place in line")
	}
	// c leaves without waiting while a wake-up is on its way to it: the
	// wake-up goes on to whoever is next.
	d := p.queue(nil)
	p.mu.Lock()
	p.wakeLocked(1) // c's
	p.mu.Unlock()
	p.leave(c)
	if !woken(d) {
		t.Fatal("the wake-up of a login that left without waiting was lost")
	}
	if st := p.Stats(); st.Waiting != 0 {
		t.Fatalf("%d still waiting", st.Waiting)
	}
}

// A thousand logins waiting at the limit: each release wakes one of them,
// not all, and all are served as backends come and go.
func TestManyLoginsWaitingAreWokenOneAtATime(t *testing.T) {
	p := NewPool()
	const limit, logins = 4, 1000
	l := PoolLimits{PerKey: 5, Max: limit, IdleTimeout: time.Minute}
	var wakes atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < logins; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var w *Waiter
			for {
				if w = p.ReserveOrQueue(l, w); w == nil {
					break
				}
				if !p.WaitTurn(context.Background(), w, time.Now().Add(time.Minute)) {
					t.Error("a login waited a minute")
					return
				}
				wakes.Add(1)
			}
			time.Sleep(time.Millisecond) // the session
			p.Release()
		}()
	}
	wg.Wait()
	if st := p.Stats(); st.InUse != 0 || st.Waiting != 0 {
		t.Fatalf("at the end: %+v", st)
	}
	// A broadcast would have woken every waiter at every release: about
	// logins*logins/2 wake-ups. One each, and a few for turns taken by
	// logins that came without waiting.
	if n := wakes.Load(); n > 3*logins {
		t.Fatalf("%d wake-ups for %d logins", n, logins)
	}
}

// An HTTP pool's dial at the limit waits for a release until its context
// ends, then fails with ErrTooManyBackends.
func TestAnHTTPDialAtTheLimitWaitsForARelease(t *testing.T) {
	p := NewPool()
	l := PoolLimits{PerKey: 5, Max: 1, IdleTimeout: time.Minute}
	if err := p.Reserve(l); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.reserveHTTP(ctx, l); err != ErrTooManyBackends {
		t.Fatalf("nothing released within the dial's timeout: %v", err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		p.Release()
	}()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := p.reserveHTTP(ctx2, l); err != nil {
		t.Fatalf("a reservation given back during the wait: %v", err)
	}
	if st := p.Stats(); st.HTTP != 1 || st.InUse != 0 {
		t.Fatalf("%+v", st)
	}
}

// A backend logged in under backend TLS settings that a reload has
// replaced is closed when it comes back and when it is parked, never
// handed out again.
func TestBackendsOfReplacedTLSSettingsAreClosed(t *testing.T) {
	p := NewPool()
	old := PoolLimits{PerKey: 5, Max: 10, IdleTimeout: time.Minute, TLS: "old"}
	now := PoolLimits{PerKey: 5, Max: 10, IdleTimeout: time.Minute, TLS: "new"}
	park := func(l PoolLimits) *Session {
		if err := p.Reserve(l); err != nil {
			t.Fatal(err)
		}
		c1, c2 := net.Pipe()
		t.Cleanup(func() { c2.Close() })
		s := &Session{Conn: c1, Key: Key{Role: "r", TLS: "old"}, Created: time.Now()}
		p.Put(s, l, time.Now())
		return s
	}
	park(old)
	park(now) // came back after the reload: closed, not parked
	if n := p.Stats().ParkedByKey[Key{Role: "r", TLS: "old"}]; n != 1 {
		t.Fatalf("%d parked, want the one that came back before the reload", n)
	}
	p.expire(now, time.Now()) // the janitor's sweep after the reload
	if n := p.Stats().ParkedByKey[Key{Role: "r", TLS: "old"}]; n != 0 {
		t.Fatalf("%d parked under the replaced settings after the sweep", n)
	}
	if p.Stats().Closed != 2 {
		t.Fatalf("closed %d, want 2", p.Stats().Closed)
	}
}

func TestTheTLSDigestFollowsTheFilesContents(t *testing.T) {
	dir := t.TempDir()
	ca := dir + "/ca.crt"
	os.WriteFile(ca, []byte("one"), 0o600)
	b := config.Backend{SSLMode: "verify-ca", SSLRootCert: ca}
	first := tlsDigest(&b)
	if tlsDigest(&b) != first {
		t.Fatal("the digest of unchanged settings changed")
	}
	os.WriteFile(ca, []byte("two"), 0o600) // a CA replaced in place
	if tlsDigest(&b) == first {
		t.Fatal("a CA file replaced under the same name left the digest as it was")
	}
	b.SSLMode = "verify-full"
	if tlsDigest(&b) == tlsDigest(&config.Backend{SSLMode: "verify-ca", SSLRootCert: ca}) {
		t.Fatal("sslmode is not in the digest")
	}
}

// At the limit with nothing parked, Reserve asks SetShed's function to close
// an idle connection elsewhere (the HTTP pools') and takes its slot; with
// none to close it fails.
func TestReserveTakesTheSlotOfAnIdleConnectionElsewhere(t *testing.T) {
	p := NewPool()
	l := PoolLimits{PerKey: 5, Max: 1, IdleTimeout: time.Minute}
	if err := p.reserveHTTP(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	idle := true
	p.SetShed(func() bool {
		if !idle {
			return false
		}
		idle = false
		p.releaseHTTP() // closing it gives its reservation back
		return true
	})
	if err := p.Reserve(l); err != nil {
		t.Fatalf("with an idle HTTP connection to close: %v", err)
	}
	if st := p.Stats(); st.HTTP != 0 || st.InUse != 1 {
		t.Fatalf("stats %+v", st)
	}
	if err := p.Reserve(l); err != ErrTooManyBackends {
		t.Fatalf("nothing left to close: %v", err)
	}
}

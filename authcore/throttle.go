package authcore

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Throttle slows down guessing from one (address, user) (SPEC section 7):
// after a failure, the next attempt of that pair is not checked until a
// delay has passed since the failure, doubling per consecutive failure up
// to a maximum; a success resets it. The wait comes before the check, right
// password or wrong, so a client that gives up early learns nothing, and an
// attempt's answer is never delayed after its check. Attempts of the same
// pair that arrive together are checked one delay apart, not all at once.
// Other addresses are never held up, so the real user elsewhere is not
// locked out. An IPv6 address counts as its network (a /64 by default):
// one host is given a whole /64 to pick source addresses from, and a
// throttle per address would let it guess at the speed of the hashing.
// It lives for the whole process, across reloads, so a reload does not
// wipe an attacker's record.
type Throttle struct {
	publish func(failure bool, addr, user string)
	v6bits  atomic.Int32
	mu      sync.Mutex
	entries map[throttleKey]*throttleEntry
	max     int
	forget  time.Duration
	swept   time.Time // the last sweep of forgotten sources
	now     func() time.Time
}

type throttleKey struct{ addr, user string }

// DefaultIPv6Prefix is how many leading bits of an IPv6 address name one
// source: the /64 that RFC 6177 and the providers give a single site.
const DefaultIPv6Prefix = 64

// SetIPv6Prefix sets how many leading bits of an IPv6 address name one
// source (throttle.ipv6_prefix); 128 counts every address on its own.
func (t *Throttle) SetIPv6Prefix(bits int) { t.v6bits.Store(int32(bits)) }

// Source names the source of an attempt from addr: the address, or its
// IPv6 network (see SetIPv6Prefix).
func (t *Throttle) Source(addr string) string { return t.key(addr, "").addr }

// key names the source of an attempt: the address, or its IPv6 network.
// An IPv4 address written as IPv6 (::ffff:a.b.c.d) is that IPv4 address.
func (t *Throttle) key(addr, user string) throttleKey {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return throttleKey{addr, user} // a unix socket, or a name
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		if p, err := a.Prefix(int(t.v6bits.Load())); err == nil {
			return throttleKey{p.String(), user}
		}
	}
	return throttleKey{a.String(), user}
}

type throttleEntry struct {
	fails int
	last  time.Time // the last failure
	next  time.Time // no attempt is checked before this
}

// NewThrottle tracks at most max sources; a source that has not failed for
// forget starts afresh.
func NewThrottle(max int, forget time.Duration) *Throttle {
	t := &Throttle{entries: make(map[throttleKey]*throttleEntry), max: max, forget: forget, now: time.Now}
	t.v6bits.Store(DefaultIPv6Prefix)
	return t
}

// backoff is the wait after fails consecutive failures.
func backoff(fails int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < fails && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

// Wait returns when an attempt of (addr, user) may be checked: at once when
// the pair has no recent failure, else once its backoff has passed. It
// waits in the caller's goroutine and holds no lock meanwhile; it returns
// ctx's error, without waiting longer, when ctx ends (the client left).
func (t *Throttle) Wait(ctx context.Context, addr, user string, base, max time.Duration) error {
	k := t.key(addr, user)
	for {
		t.mu.Lock()
		now := t.now()
		e := t.entries[k]
		if e == nil || now.Sub(e.last) > t.forget {
			t.mu.Unlock()
			return nil
		}
		if !now.Before(e.next) {
			// This attempt goes ahead; one arriving beside it waits a
			// further backoff, so parallel guesses gain nothing.
			e.next = now.Add(backoff(e.fails, base, max))
			t.mu.Unlock()
			return nil
		}
		d := e.next.Sub(now)
		t.mu.Unlock()
		if err := Sleep(ctx, d); err != nil {
			return err
		}
	}
}

// Publish, when set (before use), is told of every local Failure and
// Success, for other instances to apply: with several instances behind a
// balancer, a guess on any of them counts against the same backoff.
func (t *Throttle) SetPublisher(publish func(failure bool, addr, user string)) { t.publish = publish }

// Failure records a failed attempt of (addr, user) and returns how long
// the pair's next attempt will wait.
func (t *Throttle) Failure(addr, user string, base, max time.Duration) time.Duration {
	d := t.Apply(true, addr, user, base, max)
	if t.publish != nil {
		t.publish(true, addr, user)
	}
	return d
}

// Apply records a failure or a success another instance published, without
// publishing it again.
func (t *Throttle) Apply(failure bool, addr, user string, base, max time.Duration) time.Duration {
	k := t.key(addr, user)
	if !failure {
		t.mu.Lock()
		delete(t.entries, k)
		t.mu.Unlock()
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	e := t.entries[k]
	if e != nil && now.Sub(e.last) > t.forget {
		e = nil
	}
	if e == nil {
		t.makeRoom(now)
		e = &throttleEntry{}
		t.entries[k] = e
	}
	e.fails++
	e.last = now
	d := backoff(e.fails, base, max)
	e.next = now.Add(d)
	return d
}

// Success forgets the source's failures.
func (t *Throttle) Success(addr, user string) {
	k := t.key(addr, user)
	t.mu.Lock()
	_, had := t.entries[k]
	delete(t.entries, k)
	t.mu.Unlock()
	// Only a success that ended a backoff is news to other instances.
	if had && t.publish != nil {
		t.publish(false, addr, user)
	}
}

// evictionSample is how many entries makeRoom weighs against each other.
const evictionSample = 16

// makeRoom frees a slot when the table is full. Sources that failed long
// ago go first; then, of a sample, the one with the fewest consecutive
// failures (the oldest among equals). Any entry at all would let a client
// that fails as many throwaway user names as the table holds wipe the
// record of the name it is guessing; now it would have to drive that many
// names to as many failures, waiting out each one's backoff.
func (t *Throttle) makeRoom(now time.Time) {
	if len(t.entries) < t.max {
		return
	}
	// The sweep reads the whole table under the lock every login waits
	// for: once a second at most, so that a full table does not make each
	// new failure a walk over 100,000 entries.
	if now.Sub(t.swept) > time.Second {
		t.swept = now
		for k, e := range t.entries {
			if now.Sub(e.last) > t.forget {
				delete(t.entries, k)
			}
		}
	}
	for len(t.entries) >= t.max {
		var victim throttleKey
		var least *throttleEntry
		n := 0
		for k, e := range t.entries { // map order is random: a sample
			if least == nil || e.fails < least.fails || (e.fails == least.fails && e.last.Before(least.last)) {
				victim, least = k, e
			}
			if n++; n == evictionSample {
				break
			}
		}
		delete(t.entries, victim)
	}
}

// Sleep waits d in the caller's goroutine, or less if ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

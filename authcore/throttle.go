package authcore

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgwarden/pgwarden/hba"
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

// SourceOf names the source a client at addr counts as, for making room
// at max_connections as for throttling: its address, or its IPv6 network;
// the unix socket's clients (local) are one source, and so are the clients
// a proxy forwarded without naming them (an invalid addr). A nil t counts
// every address apart.
func (t *Throttle) SourceOf(addr netip.Addr, local bool) string {
	if local || !addr.IsValid() {
		return hba.AddrText(addr, local)
	}
	if t == nil {
		return addr.Unmap().String()
	}
	return t.Source(addr.String())
}

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
	// good is the last success, while fails is 0: the pair is proven,
	// and its attempts go ahead together.
	good time.Time
	// held: an attempt of a pair with no recent success is being checked,
	// and the others wait for its outcome (see Wait); gen tells which.
	held bool
	gen  uint64
	// wake is closed when the outcome of the attempt being checked is
	// known (Success, Failure, or its end without either).
	wake chan struct{}
}

// signal wakes the attempts waiting for this entry's change.
func (e *throttleEntry) signal() {
	if e.wake != nil {
		close(e.wake)
		e.wake = nil
	}
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

// Wait returns when an attempt of (addr, user) may be checked: at once
// when the pair succeeded lately (within the forget time, with no failure
// since), else one attempt at a time. An attempt of a pair with no recent
// success goes ahead alone and holds the others until its outcome: a
// success lets them all go ahead, a failure starts the backoff, and an end
// without either (the client left, a rule refused it) lets the next one
// go; a hold lasts at most base, so a client that stalls in the middle of
// its check delays the others no longer than that. After a failure, the
// next attempt waits until the backoff has passed, and one arriving beside
// it waits a further backoff. Before this, guesses of a pair without
// failures that were sent together were all checked at once: a client
// with 30 connections got 30 guesses before the first backoff began.
//
// It waits in the caller's goroutine and holds no lock meanwhile; it
// returns ctx's error, without waiting longer, when ctx ends (the client
// left). done, never nil, must be called once the attempt's check is over
// (after Success or Failure, or without either).
func (t *Throttle) Wait(ctx context.Context, addr, user string, base, max time.Duration) (done func(), err error) {
	k := t.key(addr, user)
	for {
		t.mu.Lock()
		now := t.now()
		e := t.entries[k]
		if e != nil && !e.held && t.stale(e, now) {
			delete(t.entries, k)
			e.signal()
			e = nil
		}
		switch {
		case e == nil:
			t.makeRoom(now)
			e = &throttleEntry{}
			t.entries[k] = e
			done := t.hold(k, e, now.Add(base))
			t.mu.Unlock()
			return done, nil
		case e.fails == 0 && !e.good.IsZero() && !e.held:
			// Proven lately: no wait, no hold.
			t.mu.Unlock()
			return nop, nil
		case !now.Before(e.next):
			d := base
			if e.fails > 0 {
				d = backoff(e.fails, base, max)
			}
			done := t.hold(k, e, now.Add(d))
			t.mu.Unlock()
			return done, nil
		}
		if e.wake == nil {
			e.wake = make(chan struct{})
		}
		wake, d := e.wake, e.next.Sub(now)
		t.mu.Unlock()
		if ctx.Err() != nil {
			return nop, ctx.Err()
		}
		timer := time.NewTimer(d)
		select {
		case <-wake:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nop, ctx.Err()
		}
		timer.Stop()
	}
}

// stale says whether e no longer counts: its failures are forgotten, or
// its success is too old to let attempts go ahead together.
func (t *Throttle) stale(e *throttleEntry, now time.Time) bool {
	if e.fails > 0 {
		return now.Sub(e.last) > t.forget
	}
	return e.good.IsZero() && !now.Before(e.next) || !e.good.IsZero() && now.Sub(e.good) > t.forget
}

// hold makes the attempt that goes ahead now the one the pair's others
// wait for, until next at the latest; t.mu is held. The returned done ends
// the hold if no outcome ended it first.
func (t *Throttle) hold(k throttleKey, e *throttleEntry, next time.Time) func() {
	e.gen++
	e.held, e.next = true, next
	gen := e.gen
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.entries[k] != e || !e.held || e.gen != gen {
			return // an outcome, or a later attempt, took over
		}
		e.held = false
		if e.fails == 0 && e.good.IsZero() {
			// Nothing was learned: the next attempt goes ahead alone
			// at once, as this one did.
			delete(t.entries, k)
		}
		e.signal()
	}
}

func nop() {}

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
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	e := t.entries[k]
	if !failure {
		if e != nil {
			e.fails, e.good, e.held = 0, now, false
			e.signal()
		}
		return 0
	}
	if e != nil && e.fails > 0 && now.Sub(e.last) > t.forget {
		e.fails = 0
	}
	if e == nil {
		t.makeRoom(now)
		e = &throttleEntry{}
		t.entries[k] = e
	}
	e.fails++
	e.last, e.good, e.held = now, time.Time{}, false
	d := backoff(e.fails, base, max)
	e.next = now.Add(d)
	e.signal()
	return d
}

// Success forgets the source's failures: the pair is proven, and its
// attempts go ahead together until it fails or is forgotten.
func (t *Throttle) Success(addr, user string) {
	k := t.key(addr, user)
	t.mu.Lock()
	now := t.now()
	e := t.entries[k]
	had := e != nil && e.fails > 0
	if e == nil {
		t.makeRoom(now)
		e = &throttleEntry{}
		t.entries[k] = e
	}
	e.fails, e.good, e.held = 0, now, false
	e.signal()
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
			if !e.held && t.stale(e, now) {
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

package pgwire

import (
	"sync"
	"time"
)

// cancelGuard bounds the CancelRequests with a wrong key that one source
// may send. A client is given its backend's real pid, which any session
// can read in pg_stat_activity, so the key's random bits are all that
// stands between anyone who can reach the port and everyone's queries:
// 32 bits, and 22 with peering (see cancelRegistry). One machine here
// tries about 12,000 keys a second, which finds a 22-bit key in about three
// minutes. A source (named as the throttle names it, Throttle.Source: an
// IPv4 address, or an IPv6 network) may miss cancelGuessBurst times, then
// cancelGuessRate times a second; past that its CancelRequests are
// ignored, silently, as wrong keys are, and each one ignored is charged as well (down to a floor), so
// a source that keeps guessing stays unheard, and one that stops is heard
// again within seconds. Right keys cost nothing, so clients that cancel
// much lose nothing.
type cancelGuard struct {
	mu      sync.Mutex
	buckets map[string]*guessBucket
	swept   time.Time // the last sweep of whole budgets
	now     func() time.Time
}

type guessBucket struct {
	tokens float64
	at     time.Time
}

const (
	cancelGuessBurst = 64
	cancelGuessRate  = 16 // per second
	// cancelGuardSources bounds the memory of an address-spraying client.
	cancelGuardSources = 65536
)

func newCancelGuard() *cancelGuard {
	return &cancelGuard{buckets: make(map[string]*guessBucket), now: time.Now}
}

// refill brings b's budget up to date; the caller holds g.mu.
func (g *cancelGuard) refill(b *guessBucket, now time.Time) {
	b.tokens += now.Sub(b.at).Seconds() * cancelGuessRate
	if b.tokens > cancelGuessBurst {
		b.tokens = cancelGuessBurst
	}
	b.at = now
}

// allow reports whether src may have a CancelRequest looked at now.
func (g *cancelGuard) allow(src string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.buckets[src]
	if b == nil {
		return true
	}
	g.refill(b, g.now())
	return b.tokens >= 1
}

// miss charges src for a wrong key, or for a request not looked at; it
// reports whether this spent the last of src's budget.
func (g *cancelGuard) miss(src string) (spent bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	b := g.buckets[src]
	if b == nil {
		if len(g.buckets) >= cancelGuardSources {
			g.makeRoom(now)
		}
		b = &guessBucket{tokens: cancelGuessBurst, at: now}
		g.buckets[src] = b
	}
	g.refill(b, now)
	spent = b.tokens >= 1 && b.tokens-1 < 1
	if b.tokens--; b.tokens < -cancelGuessBurst {
		b.tokens = -cancelGuessBurst
	}
	return spent
}

// makeRoom forgets the sources whose budget is whole again, or, when none
// is, some source: a full table never stops counting the ones in it.
func (g *cancelGuard) makeRoom(now time.Time) {
	// The sweep walks the whole table under the lock: once a second at
	// most, or an address-spraying client would make each miss a walk.
	if now.Sub(g.swept) > time.Second {
		g.swept = now
		for k, b := range g.buckets {
			g.refill(b, now)
			if b.tokens >= cancelGuessBurst {
				delete(g.buckets, k)
			}
		}
	}
	for k := range g.buckets {
		if len(g.buckets) < cancelGuardSources {
			break
		}
		delete(g.buckets, k)
	}
}

package authcore

import (
	"context"
	"sync"
	"time"
)

// Throttle slows down repeated authentication failures from one (address,
// user): each failure answers only after a delay that doubles per
// consecutive failure, up to a maximum; a success resets it. It lives for the
// whole process, across reloads, so a reload does not wipe an attacker's
// record.
type Throttle struct {
	mu      sync.Mutex
	entries map[throttleKey]*throttleEntry
	max     int
	forget  time.Duration
	now     func() time.Time
}

type throttleKey struct{ addr, user string }

type throttleEntry struct {
	fails int
	last  time.Time
}

// NewThrottle tracks at most max sources; a source that has not failed for
// forget starts afresh.
func NewThrottle(max int, forget time.Duration) *Throttle {
	return &Throttle{entries: make(map[throttleKey]*throttleEntry), max: max, forget: forget, now: time.Now}
}

// Failure records a failed attempt and returns how long to wait before
// answering it.
func (t *Throttle) Failure(addr, user string, base, max time.Duration) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	k := throttleKey{addr, user}
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
	d := base
	for i := 1; i < e.fails && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

// Success forgets the source's failures.
func (t *Throttle) Success(addr, user string) {
	t.mu.Lock()
	delete(t.entries, throttleKey{addr, user})
	t.mu.Unlock()
}

func (t *Throttle) makeRoom(now time.Time) {
	if len(t.entries) < t.max {
		return
	}
	for k, e := range t.entries {
		if now.Sub(e.last) > t.forget {
			delete(t.entries, k)
		}
	}
	for k := range t.entries {
		if len(t.entries) < t.max {
			break
		}
		delete(t.entries, k)
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

package authcore

import (
	"context"
	"slices"
	"sync"

	"github.com/pgwarden/pgwarden/internal/awake"
)

// HashLimiter bounds how many expensive hash computations run at once, so
// a flood of bad logins cannot starve relaying of CPU. One limiter serves
// the whole process, across reloads.
//
// When every slot is busy, waiting attempts are served by source in turn
// (round robin over the sources that wait, first come first served within
// one), not in the order they came: every guess at a new name costs a hash,
// which the throttle cannot hold back (it counts per name), so one source
// that keeps 64 guesses waiting had made a user's first login from
// elsewhere wait behind all of them (68 ms became 3.9 s with bcrypt cost
// 10). Now it waits for at most one hash per other source that waits.
type HashLimiter struct {
	mu     sync.Mutex
	free   int
	queues map[string][]*hashWaiter
	ring   []string // the sources that wait, in the order they are served
}

type hashWaiter struct {
	ready   chan struct{}
	granted bool
}

// NewHashLimiter allows n concurrent hash computations; n <= 0 means half
// the cores, at least one. Half, not all: Go preempts a CPU-bound goroutine
// only every 10 ms, so hashing on every core would make relayed queries wait
// for a core behind a flood of guesses.
func NewHashLimiter(n int) *HashLimiter {
	if n <= 0 {
		n = max(1, awake.WorkProcs()/2)
	}
	return &HashLimiter{free: n, queues: make(map[string][]*hashWaiter)}
}

type sourceKey struct{}

// WithSource tells the hash limiter which source (a client's address, or
// its network) an attempt comes from; attempts without one share a turn.
func WithSource(ctx context.Context, source string) context.Context {
	return context.WithValue(ctx, sourceKey{}, source)
}

// Do runs f when a slot is free and it is the turn of ctx's source (see
// WithSource), or gives up when ctx ends first.
func (l *HashLimiter) Do(ctx context.Context, f func()) error {
	src, _ := ctx.Value(sourceKey{}).(string)
	if err := l.acquire(ctx, src); err != nil {
		return err
	}
	defer l.release()
	f()
	return nil
}

func (l *HashLimiter) acquire(ctx context.Context, src string) error {
	l.mu.Lock()
	if l.free > 0 && len(l.ring) == 0 {
		l.free--
		l.mu.Unlock()
		return nil
	}
	if err := ctx.Err(); err != nil {
		l.mu.Unlock()
		return err
	}
	w := &hashWaiter{ready: make(chan struct{})}
	if len(l.queues[src]) == 0 {
		l.ring = append(l.ring, src)
	}
	l.queues[src] = append(l.queues[src], w)
	l.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	if w.granted {
		// The slot came as the client left: pass it on.
		l.mu.Unlock()
		l.release()
		return ctx.Err()
	}
	if q := slices.DeleteFunc(l.queues[src], func(o *hashWaiter) bool { return o == w }); len(q) > 0 {
		l.queues[src] = q
	} else {
		delete(l.queues, src)
		l.ring = slices.DeleteFunc(l.ring, func(s string) bool { return s == src })
	}
	l.mu.Unlock()
	return ctx.Err()
}

// release hands the slot to the first waiter of the next source in turn,
// which then goes to the back of the turn if it has more waiting.
func (l *HashLimiter) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ring) == 0 {
		l.free++
		return
	}
	src := l.ring[0]
	l.ring = l.ring[1:]
	q := l.queues[src]
	w := q[0]
	if q = q[1:]; len(q) > 0 {
		l.queues[src] = q
		l.ring = append(l.ring, src)
	} else {
		delete(l.queues, src)
	}
	w.granted = true
	close(w.ready)
}

// Package membudget counts the bytes that requests in progress hold
// against one capacity for the whole process.
//
// A bound per request (http.max_result_bytes) does not bound the process:
// many requests at once, each under its bound, can still take more memory
// than the machine or the container has, and a gateway that runs out of
// memory ends every client's session with it, the wire's too. So the
// bytes a request is about to hold are taken from a Budget first, and a
// request that finds no room is refused at once rather than made to wait:
// waiting requests would hold what they already took, and could wait on
// each other.
package membudget

import (
	"errors"
	"sync"
	"sync/atomic"
)

// ErrExhausted is the refusal of bytes the budget has no room for.
var ErrExhausted = errors.New("the memory budget for answers in progress is used up")

// Budget is a capacity in bytes and what is taken of it. Its methods are
// safe for concurrent use; a nil Budget has room for everything.
type Budget struct {
	used     atomic.Int64
	capacity atomic.Int64

	// sources is what the leases of each source hold (NewLeaseFor).
	mu      sync.Mutex
	sources map[string]int64
}

// New makes a budget of capacity bytes.
func New(capacity int64) *Budget {
	b := &Budget{}
	b.capacity.Store(capacity)
	return b
}

// SetCapacity changes the capacity (a reload). What is taken stays taken;
// a lower capacity refuses new bytes until enough is given back.
func (b *Budget) SetCapacity(n int64) {
	if b != nil && b.capacity.Load() != n {
		b.capacity.Store(n)
	}
}

// Capacity is the capacity in force.
func (b *Budget) Capacity() int64 {
	if b == nil {
		return 0
	}
	return b.capacity.Load()
}

// Used is what is taken now.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// Take takes n bytes if they fit, and says whether they did.
func (b *Budget) Take(n int64) bool {
	if b == nil || n <= 0 {
		return true
	}
	for {
		u := b.used.Load()
		if u+n > b.capacity.Load() {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// Give gives back n bytes taken before.
func (b *Budget) Give(n int64) {
	if b != nil && n > 0 {
		b.used.Add(-n)
	}
}

// TakeFor takes n bytes for a source (a client address): within half the
// capacity for that source, and within the capacity in all. An empty
// source is anyone's, bounded by the capacity alone.
func (b *Budget) TakeFor(source string, n int64) bool {
	if b == nil || n <= 0 {
		return true
	}
	if source == "" {
		return b.Take(n)
	}
	if !b.takeShare(source, n) {
		return false
	}
	if !b.Take(n) {
		b.giveShare(source, n)
		return false
	}
	return true
}

// GiveFor gives back n bytes TakeFor took for source.
func (b *Budget) GiveFor(source string, n int64) {
	if source != "" {
		b.giveShare(source, n)
	}
	b.Give(n)
}

// takeShare counts n more bytes for source, unless it would then hold
// more than half the capacity.
func (b *Budget) takeShare(source string, n int64) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	u := b.sources[source]
	if u+n > b.capacity.Load()/2 {
		return false
	}
	if b.sources == nil {
		b.sources = make(map[string]int64)
	}
	b.sources[source] = u + n
	return true
}

// giveShare counts n bytes of source's as given back.
func (b *Budget) giveShare(source string, n int64) {
	if b == nil || n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if u := b.sources[source] - n; u > 0 {
		b.sources[source] = u
	} else {
		delete(b.sources, source)
	}
}

// UsedBy is what the leases of source hold now.
func (b *Budget) UsedBy(source string) int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sources[source]
}

// Lease is what one request holds of a budget: it only grows, and Return
// gives it all back. A Lease is used by one goroutine at a time; the zero
// Lease (or one of a nil Budget) has room for everything.
type Lease struct {
	b      *Budget
	held   int64
	source string
}

// NewLease starts an empty lease of b.
func (b *Budget) NewLease() *Lease { return &Lease{b: b} }

// NewLeaseFor starts an empty lease of b for a source (a client address):
// the leases of one source may hold at most half the capacity together,
// so that one client's requests cannot take every other client's room.
func (b *Budget) NewLeaseFor(source string) *Lease { return &Lease{b: b, source: source} }

// Held is what the lease holds.
func (l *Lease) Held() int64 {
	if l == nil {
		return 0
	}
	return l.held
}

// GrowTo makes the lease hold at least n bytes; false, holding what it
// held, when the budget has no room for the difference.
func (l *Lease) GrowTo(n int64) bool {
	if l == nil || n <= l.held {
		return true
	}
	if !l.b.TakeFor(l.source, n-l.held) {
		return false
	}
	l.held = n
	return true
}

// Return gives back everything the lease holds.
func (l *Lease) Return() {
	if l == nil {
		return
	}
	l.b.GiveFor(l.source, l.held)
	l.held = 0
}

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
	"sync/atomic"
)

// ErrExhausted is the refusal of bytes the budget has no room for.
var ErrExhausted = errors.New("the memory budget for answers in progress is used up")

// Budget is a capacity in bytes and what is taken of it. Its methods are
// safe for concurrent use; a nil Budget has room for everything.
type Budget struct {
	used     atomic.Int64
	capacity atomic.Int64
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

// Lease is what one request holds of a budget: it only grows, and Return
// gives it all back. A Lease is used by one goroutine at a time; the zero
// Lease (or one of a nil Budget) has room for everything.
type Lease struct {
	b    *Budget
	held int64
}

// NewLease starts an empty lease of b.
func (b *Budget) NewLease() *Lease { return &Lease{b: b} }

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
	if !l.b.Take(n - l.held) {
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
	l.b.Give(l.held)
	l.held = 0
}

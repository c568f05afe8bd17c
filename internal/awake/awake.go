// Package awake keeps Go's system monitor awake while the server is busy.
//
// The Go runtime's monitor thread (sysmon) sleeps deeply whenever every P
// is idle, and the first system call after that wakes it and starts it
// over at its fastest pace: a sleep of 20 µs, fifty times, before it backs
// off towards 10 ms. A gateway is idle between nearly every two messages
// (it waits on the client, then on PostgreSQL), so under load the monitor
// spends its time in those short sleeps: about a quarter of the proxy's CPU
// per login, measured (see README, Performance). A Keeper holds one P of
// its own, blocked in the kernel, so that never every P is idle and the
// monitor backs off as it should; it raises GOMAXPROCS by one so that the
// server's own work keeps the Ps it had. After a second without activity
// it lets go of its P, so an idle server is as quiet as before.
package awake

import (
	"runtime"
	"sync/atomic"
	"time"
)

// Keeper holds a P while the server is busy (Touch). A nil Keeper does
// nothing.
type Keeper struct {
	busy   atomic.Bool // touched since the keeper last looked
	parked atomic.Bool // holding nothing, waiting for a touch
	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	procs  int // GOMAXPROCS before Start

	hold  time.Duration // one blocking wait
	quiet time.Duration // without a touch, then park
	// parks counts the times the keeper let go of its P, waits its
	// blocking waits (for tests).
	parks, waits atomic.Int64
}

// reserved is the number of Ps a running Keeper holds.
var reserved atomic.Int32

// WorkProcs is the number of Ps for the server's own work: GOMAXPROCS
// less the one a running Keeper holds.
func WorkProcs() int {
	return max(1, runtime.GOMAXPROCS(0)-int(reserved.Load()))
}

// Touch says the server is busy: a parked keeper takes its P again.
func (k *Keeper) Touch() {
	if k == nil {
		return
	}
	if !k.busy.Load() {
		k.busy.Store(true)
	}
	if k.parked.Load() && k.parked.CompareAndSwap(true, false) {
		select {
		case k.kick <- struct{}{}:
		default:
		}
	}
}

// Stop ends the keeper and gives back the P it added.
func (k *Keeper) Stop() {
	if k == nil {
		return
	}
	select {
	case <-k.stop:
		return
	default:
	}
	close(k.stop)
	<-k.done
	reserved.Add(-1)
	runtime.GOMAXPROCS(k.procs)
}

// run holds the P in short blocking waits (each ends in a yield, so a
// garbage collection or a preemption has the P within one wait, also when
// asynchronous preemption is off), parks after quiet without a touch, and
// takes the P again at the next one.
func (k *Keeper) run(wait func(time.Duration)) {
	defer close(k.done)
	rounds := max(1, int(k.quiet/k.hold))
	calm := 0
	for {
		wait(k.hold)
		k.waits.Add(1)
		runtime.Gosched()
		select {
		case <-k.stop:
			return
		default:
		}
		if k.busy.Swap(false) {
			calm = 0
			continue
		}
		if calm++; calm < rounds {
			continue
		}
		calm = 0
		k.parked.Store(true)
		k.parks.Add(1)
		// A touch between the last look and parked: take it back here,
		// or, when Touch already did, take its kick.
		if k.busy.Load() && k.parked.CompareAndSwap(true, false) {
			continue
		}
		select {
		case <-k.kick:
		case <-k.stop:
			return
		}
	}
}

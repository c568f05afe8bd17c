// Package memtrim returns memory to the operating system once the process
// has gone quiet after a burst of work.
//
// Go's garbage collector lets the heap grow to twice the live data before it
// collects, and hands freed pages back to the kernel only slowly. A gateway
// that has just taken a thousand logins keeps their garbage resident while
// it then holds those sessions idle for hours: about three times what the
// sessions themselves need. Trimming once the allocation rate has dropped
// costs one collection per burst and nothing while the server is busy.
package memtrim

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Policy says when to trim.
type Policy struct {
	// Every is how often the allocation counter is read.
	Every time.Duration
	// Burst is how much must have been allocated since the last trim for
	// another to be worth a collection.
	Burst uint64
	// Quiet is the most that may have been allocated in the last period for
	// the process to count as quiet.
	Quiet uint64
}

// Default trims after 8 MiB of allocations once fewer than 256 KiB were
// allocated in a second: a login costs tens of kilobytes, so a few hundred
// logins make a burst, and one login a second is quiet.
var Default = Policy{Every: time.Second, Burst: 8 << 20, Quiet: 256 << 10}

// Run trims per p until ctx ends. It calls trim (debug.FreeOSMemory when
// nil) and returns how many times it did, for tests.
func Run(ctx context.Context, p Policy, trim func()) int {
	if trim == nil {
		trim = debug.FreeOSMemory
	}
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return sample[0].Value.Uint64()
	}
	t := time.NewTicker(p.Every)
	defer t.Stop()
	last := read()
	trimmedAt := last
	n := 0
	for {
		select {
		case <-ctx.Done():
			return n
		case <-t.C:
		}
		now := read()
		if now-trimmedAt >= p.Burst && now-last < p.Quiet {
			trim()
			n++
			now = read()
			trimmedAt = now
		}
		last = now
	}
}

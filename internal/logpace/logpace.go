// Package logpace paces the log lines a flood would repeat (connections
// closed to make room, a cancel forwarding loop, notifications someone
// else sends): one line per interval, saying how many it stands for, so
// a flood cannot flood the log.
package logpace

import (
	"sync/atomic"
	"time"
)

// Every is how often a paced line may be logged.
const Every = 10 * time.Second

// Pace lets a line through at most once per Every.
type Pace struct{ last atomic.Int64 }

// Due reports whether the line may be logged now, and if so starts the
// next interval.
func (p *Pace) Due() bool {
	now := time.Now().UnixNano()
	last := p.last.Load()
	return now-last >= int64(Every) && p.last.CompareAndSwap(last, now)
}

// Count counts events and lets a line about them through at most once
// per Every.
type Count struct {
	n    atomic.Int64
	pace Pace
}

// Add counts one event. When a line is due it returns true and the
// number of events since the last line (this one included).
func (c *Count) Add() (int64, bool) {
	n := c.n.Add(1)
	if !c.pace.Due() {
		return 0, false
	}
	c.n.Add(-n)
	return n, true
}

//go:build linux

package awake

import (
	"runtime"
	rtmetrics "runtime/metrics"
	"testing"
	"time"
)

// running is the number of goroutines the runtime counts as running.
func running() uint64 {
	s := [1]rtmetrics.Sample{{Name: "/sched/goroutines/running:goroutines"}}
	rtmetrics.Read(s[:])
	return s[0].Value.Uint64()
}

// within polls cond for up to d.
func within(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// A keeper holds a P of its own while touched (the runtime counts it as
// running, beside the test), adds that P to GOMAXPROCS, lets go of it
// after its quiet time, takes it again at a touch, lets collections
// through, and gives the P back when stopped.
func TestKeeperHoldsAPWhileTouchedAndLetsGoWhenQuiet(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	k := start(5*time.Millisecond, 100*time.Millisecond)
	if k == nil {
		t.Fatal("no keeper")
	}
	if got := runtime.GOMAXPROCS(0); got != procs+1 {
		t.Fatalf("GOMAXPROCS %d, want %d", got, procs+1)
	}
	if got := WorkProcs(); got != procs {
		t.Fatalf("WorkProcs %d, want %d", got, procs)
	}
	// Touched: it keeps its P.
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		k.Touch()
	}
	if n := k.parks.Load(); n != 0 {
		t.Fatalf("parked %d times while touched", n)
	}
	if !within(time.Second, func() bool { return running() >= 2 }) {
		t.Fatalf("the keeper does not hold a P: %d goroutines running", running())
	}
	// A collection stops every P, the keeper's too.
	start := time.Now()
	runtime.GC()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a collection took %v", d)
	}
	// Quiet: it lets go.
	if !within(2*time.Second, func() bool { return k.parks.Load() == 1 && k.parked.Load() }) {
		t.Fatalf("not parked after its quiet time (parks %d)", k.parks.Load())
	}
	if !within(time.Second, func() bool { return running() == 1 }) {
		t.Fatalf("parked yet %d goroutines running", running())
	}
	// A touch takes the P again.
	k.Touch()
	if k.parked.Load() {
		t.Fatal("still parked after a touch")
	}
	if !within(time.Second, func() bool { return running() >= 2 }) {
		t.Fatal("the keeper did not take its P again")
	}
	if !within(2*time.Second, func() bool { return k.parks.Load() == 2 }) {
		t.Fatalf("not parked again (parks %d)", k.parks.Load())
	}
	k.Stop()
	k.Stop()
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Fatalf("GOMAXPROCS %d after Stop, want %d", got, procs)
	}
	if got := WorkProcs(); got != procs {
		t.Fatalf("WorkProcs %d after Stop, want %d", got, procs)
	}
}

// Touches racing with the keeper's own decision to park never leave it
// parked while the server is busy.
func TestKeeperNeverSleepsThroughATouch(t *testing.T) {
	k := start(time.Millisecond, time.Millisecond)
	defer k.Stop()
	for i := 0; i < 1000; i++ {
		w := k.waits.Load()
		k.Touch()
		if !within(time.Second, func() bool { return k.waits.Load() > w }) {
			t.Fatalf("touch %d: the keeper does not hold its P (parked %v)", i, k.parked.Load())
		}
		time.Sleep(time.Duration(i%3) * time.Millisecond)
	}
	if k.parks.Load() == 0 {
		t.Fatal("never parked: the race with a touch was not tried")
	}
}

// A nil keeper (off, or not Linux) takes touches and stops.
func TestNilKeeper(t *testing.T) {
	var k *Keeper
	k.Touch()
	k.Stop()
}

package membudget

import (
	"sync"
	"testing"
)

func TestTakeRefusesWhatDoesNotFitAndGiveMakesRoom(t *testing.T) {
	b := New(100)
	if !b.Take(60) || !b.Take(40) {
		t.Fatal("bytes within the capacity were refused")
	}
	if b.Take(1) {
		t.Fatal("a byte past the capacity was taken")
	}
	b.Give(40)
	if !b.Take(30) || b.Used() != 90 {
		t.Fatalf("after giving back, used %d, want 90", b.Used())
	}
	b.SetCapacity(50)
	if b.Take(1) {
		t.Fatal("a lower capacity let a byte in while more than it was taken")
	}
}

func TestALeaseGrowsAndGivesEverythingBack(t *testing.T) {
	b := New(100)
	l := b.NewLease()
	if !l.GrowTo(30) || !l.GrowTo(20) || l.Held() != 30 {
		t.Fatalf("held %d, want 30 (a lease never shrinks)", l.Held())
	}
	other := b.NewLease()
	if other.GrowTo(71) {
		t.Fatal("a second lease took more than was left")
	}
	if other.Held() != 0 || b.Used() != 30 {
		t.Fatalf("a refused growth took something: held %d, used %d", other.Held(), b.Used())
	}
	l.Return()
	if b.Used() != 0 || l.Held() != 0 {
		t.Fatalf("after Return, used %d, held %d", b.Used(), l.Held())
	}
	var none *Budget
	if !none.NewLease().GrowTo(1<<40) || !none.Take(1<<40) {
		t.Fatal("a nil budget refused")
	}
}

func TestConcurrentTakesNeverPassTheCapacity(t *testing.T) {
	b := New(1000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	taken := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if b.Take(7) {
					mu.Lock()
					taken += 7
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if taken > 1000 || int64(taken) != b.Used() {
		t.Fatalf("taken %d, used %d, capacity 1000", taken, b.Used())
	}
}

// The leases of one source hold at most half the capacity together;
// another source still finds the rest, and what a source gave back is
// its own again.
func TestOneSourceTakesAtMostHalf(t *testing.T) {
	b := New(100)
	a1, a2 := b.NewLeaseFor("10.0.0.1"), b.NewLeaseFor("10.0.0.1")
	if !a1.GrowTo(30) || !a2.GrowTo(20) {
		t.Fatal("a source was refused within its half")
	}
	if a2.GrowTo(21) || b.UsedBy("10.0.0.1") != 50 || b.Used() != 50 {
		t.Fatalf("a source passed its half: by it %d, in all %d", b.UsedBy("10.0.0.1"), b.Used())
	}
	other := b.NewLeaseFor("10.0.0.2")
	if !other.GrowTo(50) {
		t.Fatal("another source was refused the other half")
	}
	if b.NewLease().GrowTo(1) {
		t.Fatal("a byte past the capacity was taken")
	}
	a1.Return()
	if !a2.GrowTo(50) || b.UsedBy("10.0.0.1") != 50 {
		t.Fatalf("after giving back, the source holds %d", b.UsedBy("10.0.0.1"))
	}
	a2.Return()
	other.Return()
	if b.Used() != 0 || b.UsedBy("10.0.0.1") != 0 || len(b.sources) != 0 {
		t.Fatalf("after every return: used %d, sources %v", b.Used(), b.sources)
	}
}

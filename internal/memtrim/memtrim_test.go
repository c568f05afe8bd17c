package memtrim

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

var sink [][]byte

func TestTrimsOnceAfterABurstWhenQuiet(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var trims atomic.Int32
	done := make(chan int)
	p := Policy{Every: 20 * time.Millisecond, Burst: 4 << 20, Quiet: 1 << 20}
	go func() { done <- Run(ctx, p, func() { trims.Add(1) }) }()
	time.Sleep(60 * time.Millisecond)
	if trims.Load() != 0 {
		t.Fatalf("trimmed %d times with nothing allocated", trims.Load())
	}
	for i := 0; i < 64; i++ { // the burst: 8 MiB
		sink = append(sink, make([]byte, 128<<10))
	}
	sink = nil
	deadline := time.Now().Add(5 * time.Second)
	for trims.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // quiet: no second trim
	cancel()
	if n := <-done; n != 1 {
		t.Fatalf("trimmed %d times after one burst, want 1", n)
	}
}

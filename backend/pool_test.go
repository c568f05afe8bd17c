package backend

import (
	"context"
	"net"
	"testing"
	"time"
)

// At max_backend_connections a login waits for a backend whose reset is
// in flight, takes it once parked, and is refused at once when every
// backend is in use (none on its way back) or when the wait's deadline
// passes.
func TestALoginAtTheLimitWaitsOnlyForBackendsOnTheirWayBack(t *testing.T) {
	p := NewPool()
	l := PoolLimits{PerKey: 5, Max: 1, IdleTimeout: time.Minute}
	key := Key{}
	if err := p.Reserve(l); err != nil {
		t.Fatal(err)
	}
	c1, c2 := net.Pipe()
	defer c2.Close()
	s := &Session{Conn: c1, Key: key, Created: time.Now()}
	if err := p.Reserve(l); err != ErrTooManyBackends {
		t.Fatalf("second reservation at a limit of 1: %v", err)
	}
	start := time.Now()
	if p.WaitReturn(context.Background(), time.Now().Add(5*time.Second)) {
		t.Fatal("every backend in use: a login waited for one to come back")
	}
	if time.Since(start) > time.Second {
		t.Fatal("every backend in use: the refusal waited")
	}

	p.Returning(s)
	go func() {
		time.Sleep(50 * time.Millisecond)
		p.Put(s, l, time.Now())
	}()
	if !p.WaitReturn(context.Background(), time.Now().Add(5*time.Second)) {
		t.Fatal("a backend on its way back: the login did not wait for it")
	}
	if got := p.Get(key, l, time.Now()); got != s {
		t.Fatalf("the backend that came back was not handed out: %v", got)
	}

	p.Returning(s)
	if p.WaitReturn(context.Background(), time.Now().Add(50*time.Millisecond)) {
		t.Fatal("nothing came back: the wait did not end at its deadline")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if p.WaitReturn(ctx, time.Now().Add(5*time.Second)) {
		t.Fatal("the client left: the wait did not end")
	}
	p.Discard(s)
	if st := p.Stats(); st.InUse != 0 || st.Parked != 0 {
		t.Fatalf("after the discard: %+v", st)
	}
	if p.WaitReturn(context.Background(), time.Now().Add(5*time.Second)) {
		t.Fatal("the returning backend was discarded: a login still waits for it")
	}
}

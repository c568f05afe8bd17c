package backend

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair is a loopback TCP connection: pgwarden's end and PostgreSQL's.
func tcpPair(t *testing.T) (ours, theirs net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ours, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	theirs, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ours.Close(); theirs.Close() })
	return ours, theirs
}

// waitStats polls the pool until ok holds (bounded).
func waitStats(t *testing.T, p *Pool, ok func(Stats) bool) Stats {
	t.Helper()
	for i := 0; ; i++ {
		st := p.Stats()
		if ok(st) {
			return st
		}
		if i == 500 {
			t.Fatalf("pool stats stayed %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A backend abandoned while it owes answers stays counted until it has
// given them: pgwarden shuts its side for writing (PostgreSQL reads the
// end of the session), and the slot is free once answered says the
// backend owes nothing more, or the backend closes, not before.
func TestAnAbandonedBackendCountsUntilItHasAnsweredOrCloses(t *testing.T) {
	for _, end := range []string{"answers", "closes"} {
		t.Run(end, func(t *testing.T) {
			p := NewPool()
			defer p.Close()
			l := PoolLimits{PerKey: 5, Max: 1}
			if err := p.Reserve(l); err != nil {
				t.Fatal(err)
			}
			ours, pgSide := tcpPair(t)
			var seen []byte
			p.Abandon(&Session{Conn: ours, Created: time.Now()}, func(chunk []byte) bool {
				seen = append(seen, chunk...)
				return bytes.Contains(seen, []byte("done"))
			})

			// PostgreSQL sees the end of what pgwarden sends.
			pgSide.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, err := pgSide.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("the backend's read: %d bytes, %v; want EOF", n, err)
			}
			if st := p.Stats(); st.InUse != 1 || st.Ending != 1 {
				t.Fatalf("in use %d, ending %d while the backend runs on; want 1 and 1", st.InUse, st.Ending)
			}
			if err := p.Reserve(l); err != ErrTooManyBackends {
				t.Fatalf("a reservation while the abandoned backend runs on: %v, want ErrTooManyBackends", err)
			}
			// A first answer that is not the last keeps it counted.
			pgSide.Write([]byte("not yet "))
			time.Sleep(50 * time.Millisecond)
			if st := p.Stats(); st.Ending != 1 {
				t.Fatalf("ending %d after a partial answer, want 1", st.Ending)
			}

			if end == "answers" {
				pgSide.Write([]byte("done"))
			} else {
				pgSide.Close()
			}
			waitStats(t, p, func(st Stats) bool { return st.InUse == 0 && st.Ending == 0 })
			if err := p.Reserve(l); err != nil {
				t.Fatalf("a reservation after the backend ended: %v", err)
			}
			if st := p.Stats(); st.Closed != 1 {
				t.Fatalf("closed %d, want 1", st.Closed)
			}
		})
	}
}

// Pool.Close ends the backends still owing answers, and a backend
// abandoned after it is closed at once.
func TestPoolCloseEndsTheBackendsStillOwingAnswers(t *testing.T) {
	never := func([]byte) bool { return false }
	p := NewPool()
	l := PoolLimits{PerKey: 5, Max: 2}
	p.Reserve(l)
	p.Reserve(l)
	before, pgBefore := tcpPair(t)
	p.Abandon(&Session{Conn: before, Created: time.Now()}, never)
	waitStats(t, p, func(st Stats) bool { return st.Ending == 1 })
	p.Close()
	if st := p.Stats(); st.InUse != 1 || st.Ending != 0 {
		t.Fatalf("after Close: in use %d, ending %d; want 1 (not given up yet) and 0", st.InUse, st.Ending)
	}
	after, pgAfter := tcpPair(t)
	p.Abandon(&Session{Conn: after, Created: time.Now()}, never)
	if st := p.Stats(); st.InUse != 0 || st.Ending != 0 {
		t.Fatalf("abandoned after Close: in use %d, ending %d; want 0 and 0", st.InUse, st.Ending)
	}
	for _, c := range []net.Conn{pgBefore, pgAfter} {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("the backend's side after Close: %v, want EOF", err)
		}
	}
}

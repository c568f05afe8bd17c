//go:build linux

package pgwire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"golang.org/x/sys/unix"

	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/metrics"
)

// loopPair is one end a loop holds (fd) and the test's end of it.
func loopPair(t testing.TB) (int, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[1]), "test end")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return fds[0], c
}

// loopSession is a session in a loop with the test playing both client and
// backend.
type loopSession struct {
	client, backend net.Conn
	ended           chan evResult
	es              *evSession
}

func startLoopSession(t testing.TB, ls *evLoops, pending []byte) *loopSession {
	cfd, client := loopPair(t)
	bfd, be := loopPair(t)
	x := &loopSession{client: client, backend: be, ended: make(chan evResult, 1)}
	lp := ls.pick()
	x.es = &evSession{lp: lp, cfd: cfd, bfd: bfd, session: &backend.Session{}, metrics: metrics.New(),
		onEnd: func(r evResult) {
			if !r.reusable && r.backendFD >= 0 {
				unix.Close(r.backendFD)
			}
			x.ended <- r
		}}
	lp.add(x.es, pending)
	return x
}

func readMsg(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
	_, err := io.ReadFull(r, body)
	return hdr[0], body, err
}

// roundTrip sends a query from the client, answers it as the backend with
// rows of size rowSize, and reads the answer back as the client.
func (x *loopSession) roundTrip(t testing.TB, q string, rows, rowSize int) error {
	deadline := time.Now().Add(30 * time.Second)
	x.client.SetDeadline(deadline)
	x.backend.SetDeadline(deadline)
	if _, err := x.client.Write(encodeAll(t, &pgproto3.Query{String: q})); err != nil {
		return err
	}
	typ, body, err := readMsg(x.backend)
	if err != nil {
		return err
	}
	if typ != 'Q' || string(body[:len(body)-1]) != q {
		return fmt.Errorf("backend got %c %q", typ, body)
	}
	row := bytes.Repeat([]byte{'r'}, rowSize)
	var answer []byte
	for i := 0; i < rows; i++ {
		answer = encodeAll(t, &pgproto3.DataRow{Values: [][]byte{row}})
		go x.backend.Write(answer)
		// One row at a time: a slow reader must not make the loop buffer
		// more than a read's worth.
		typ, body, err := readMsg(x.client)
		if err != nil {
			return err
		}
		if typ != 'D' || len(body) != 6+rowSize {
			return fmt.Errorf("client got %c of %d bytes", typ, len(body))
		}
	}
	if _, err := x.backend.Write(encodeAll(t, &pgproto3.CommandComplete{CommandTag: []byte("SELECT")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})); err != nil {
		return err
	}
	for {
		typ, body, err := readMsg(x.client)
		if err != nil {
			return err
		}
		if typ == 'Z' {
			if string(body) != "I" {
				return fmt.Errorf("status %q", body)
			}
			return nil
		}
	}
}

// TestEventLoopRelaysThousandsOfSessions drives thousands of concurrent
// sessions through two loops: queries and answers pass intact, Terminate
// is held back from the backend, and each session ends with its backend
// handed back for reuse.
func TestEventLoopRelaysThousandsOfSessions(t *testing.T) {
	ls, err := newEvLoops(2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.close()
	n := 2000
	if testing.Short() {
		n = 200
	}
	sessions := make([]*loopSession, n)
	for i := range sessions {
		sessions[i] = startLoopSession(t, ls, nil)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, x := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < 3; r++ {
				if err := x.roundTrip(t, fmt.Sprintf("SELECT %d", i), 1+r, 10+i%50); err != nil {
					errs <- fmt.Errorf("session %d round %d: %w", i, r, err)
					return
				}
			}
			x.client.Write(encodeAll(t, &pgproto3.Terminate{}))
			select {
			case r := <-x.ended:
				if !r.reusable {
					errs <- fmt.Errorf("session %d: backend not handed back", i)
					return
				}
				unix.Close(r.backendFD)
			case <-time.After(30 * time.Second):
				errs <- fmt.Errorf("session %d did not end", i)
				return
			}
			x.backend.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if b, err := io.ReadAll(x.backend); len(b) > 0 {
				errs <- fmt.Errorf("session %d: backend got %q after the last query (%v)", i, b, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestEventLoopCarriesLargeMessagesToASlowReader: a message larger than the
// loop's read buffer reaches a client that reads slowly, byte for byte.
func TestEventLoopCarriesLargeMessagesToASlowReader(t *testing.T) {
	ls, err := newEvLoops(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.close()
	x := startLoopSession(t, ls, nil)
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	x.client.Write(encodeAll(t, &pgproto3.Query{String: "SELECT big"}))
	if _, _, err := readMsg(x.backend); err != nil {
		t.Fatal(err)
	}
	go x.backend.Write(encodeAll(t, &pgproto3.DataRow{Values: [][]byte{big}}, &pgproto3.ReadyForQuery{TxStatus: 'I'}))
	x.client.SetDeadline(time.Now().Add(30 * time.Second))
	var got []byte
	buf := make([]byte, 1000)
	for len(got) < 5+6+len(big) {
		want := min(len(buf), 5+6+len(big)-len(got))
		n, err := x.client.Read(buf[:want])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
		if len(got) < 1<<20 {
			time.Sleep(time.Microsecond)
		}
	}
	if !bytes.Equal(got[11:11+len(big)], big) {
		t.Fatal("the large row arrived changed")
	}
	typ, _, err := readMsg(x.client)
	if err != nil || typ != 'Z' {
		t.Fatalf("after the row: %c, %v", typ, err)
	}
}

// TestEventLoopPendingBytesGoFirst: bytes the client pipelined during
// authentication reach the backend before anything read later.
func TestEventLoopPendingBytesGoFirst(t *testing.T) {
	ls, err := newEvLoops(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.close()
	x := startLoopSession(t, ls, encodeAll(t, &pgproto3.Query{String: "SELECT early"}))
	x.backend.SetDeadline(time.Now().Add(10 * time.Second))
	typ, body, err := readMsg(x.backend)
	if err != nil || typ != 'Q' || string(body) != "SELECT early\x00" {
		t.Fatalf("backend got %c %q, %v", typ, body, err)
	}
}

// TestEventLoopTakesInASessionWithoutAWakeUp: a session with nothing
// pipelined goes into the loop's epoll set at once and is taken in when
// its first event wakes the loop, with no eventfd write per login; one with
// pipelined bytes still wakes the loop, which has them to pass on.
func TestEventLoopTakesInASessionWithoutAWakeUp(t *testing.T) {
	ls, err := newEvLoops(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.close()
	lp := ls.loops[0]
	before := lp.wakes.Load()
	var xs []*loopSession
	for i := 0; i < 50; i++ {
		xs = append(xs, startLoopSession(t, ls, nil))
	}
	for i, x := range xs {
		if err := x.roundTrip(t, fmt.Sprintf("SELECT %d", i), 2, 10); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	if n := lp.wakes.Load() - before; n != 0 {
		t.Fatalf("%d wake-ups for 50 sessions with nothing pipelined, want 0", n)
	}
	x := startLoopSession(t, ls, encodeAll(t, &pgproto3.Query{String: "SELECT early"}))
	x.backend.SetDeadline(time.Now().Add(10 * time.Second))
	if typ, body, err := readMsg(x.backend); err != nil || typ != 'Q' || string(body) != "SELECT early\x00" {
		t.Fatalf("backend got %c %q, %v", typ, body, err)
	}
	if lp.wakes.Load() == before {
		t.Fatal("a session with pipelined bytes did not wake the loop")
	}
}

// TestEventLoopEndsSessionsThatCannotBeReused: a client that leaves without
// Terminate, one that leaves inside a transaction, and a backend that
// closes all end the session without handing the backend back.
func TestEventLoopEndsSessionsThatCannotBeReused(t *testing.T) {
	ls, err := newEvLoops(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.close()
	wait := func(x *loopSession) evResult {
		t.Helper()
		select {
		case r := <-x.ended:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end")
		}
		return evResult{}
	}

	x := startLoopSession(t, ls, nil)
	x.client.Close()
	if r := wait(x); r.reusable {
		t.Error("client left without Terminate: backend handed back")
	}

	x = startLoopSession(t, ls, nil)
	x.client.Write(encodeAll(t, &pgproto3.Query{String: "BEGIN"}))
	readMsg(x.backend)
	x.backend.Write(encodeAll(t, &pgproto3.CommandComplete{CommandTag: []byte("BEGIN")}, &pgproto3.ReadyForQuery{TxStatus: 'T'}))
	readMsg(x.client)
	readMsg(x.client)
	x.client.Write(encodeAll(t, &pgproto3.Terminate{}))
	if r := wait(x); r.reusable {
		t.Error("left inside a transaction: backend handed back")
	}

	x = startLoopSession(t, ls, nil)
	x.backend.Write(encodeAll(t, &pgproto3.ErrorResponse{Severity: "FATAL", Code: "57P01", Message: "bye"}))
	x.backend.Close()
	x.client.SetDeadline(time.Now().Add(10 * time.Second))
	if typ, _, err := readMsg(x.client); err != nil || typ != 'E' {
		t.Errorf("the backend's last words did not reach the client: %c, %v", typ, err)
	}
	if r := wait(x); r.reusable {
		t.Error("backend closed: handed back")
	}
}

// TestEventLoopTerminateTellsTheClient: a server shutdown ends a session at
// a message boundary with FATAL 57P01, as PostgreSQL does.
func TestEventLoopTerminateTellsTheClient(t *testing.T) {
	ls, err := newEvLoops(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.close()
	x := startLoopSession(t, ls, nil)
	if err := x.roundTrip(t, "SELECT 1", 1, 10); err != nil {
		t.Fatal(err)
	}
	x.es.terminate()
	x.client.SetDeadline(time.Now().Add(10 * time.Second))
	typ, body, err := readMsg(x.client)
	if err != nil || typ != 'E' || !bytes.Contains(body, []byte("57P01")) {
		t.Fatalf("client got %c %q, %v; want FATAL 57P01", typ, body, err)
	}
	if _, err := x.client.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after 57P01: %v, want EOF", err)
	}
	if r := <-x.ended; r.reusable {
		t.Error("terminated session handed its backend back")
	}
}

// TestEventLoopDeliversTheLastWordsOfABackendThatHungUp: the backend sends
// more than a slow client takes at once, then a FATAL, and closes; the client
// still gets every byte, the FATAL last.
func TestEventLoopDeliversTheLastWordsOfABackendThatHungUp(t *testing.T) {
	ls, err := newEvLoops(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.close()
	x := startLoopSession(t, ls, nil)
	big := bytes.Repeat([]byte{'b'}, 2<<20)
	out := encodeAll(t, &pgproto3.DataRow{Values: [][]byte{big}},
		&pgproto3.ErrorResponse{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"})
	go func() {
		x.backend.Write(out)
		x.backend.Close()
	}()
	time.Sleep(100 * time.Millisecond) // the loop holds bytes for the client and the backend has hung up
	x.client.SetDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(x.client)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, out) {
		t.Fatalf("client got %d bytes, want %d", len(got), len(out))
	}
	if r := <-x.ended; r.reusable {
		t.Error("backend that hung up was handed back")
	}
}

// TestEventLoopHandsBackABackendThatFinishesAfterTheClientLeft: the client
// sends a query and Terminate and closes at once; the backend answers later;
// the backend, idle at a boundary, is handed back.
func TestEventLoopHandsBackABackendThatFinishesAfterTheClientLeft(t *testing.T) {
	ls, err := newEvLoops(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.close()
	x := startLoopSession(t, ls, nil)
	x.client.Write(encodeAll(t, &pgproto3.Query{String: "SELECT pg_sleep(0.2)"}, &pgproto3.Terminate{}))
	x.client.Close()
	x.backend.SetDeadline(time.Now().Add(10 * time.Second))
	if typ, _, err := readMsg(x.backend); err != nil || typ != 'Q' {
		t.Fatalf("backend got %c, %v", typ, err)
	}
	time.Sleep(200 * time.Millisecond)
	x.backend.Write(encodeAll(t, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'}))
	select {
	case r := <-x.ended:
		if !r.reusable {
			t.Fatal("backend not handed back")
		}
		unix.Close(r.backendFD)
	case <-time.After(10 * time.Second):
		t.Fatal("session did not end")
	}
}

// heldWaits reads the loop's count of held waits on its own goroutine.
func heldWaits(lp *evLoop) int64 {
	ch := make(chan int64, 1)
	lp.do(func() { ch <- lp.heldWaits })
	return <-ch
}

// TestEventLoopHoldsItsWaitForOneSessionYetYieldsToTheRuntime: with one
// session in use and a P to spare, the loop waits in epoll_wait itself; the
// relay answers every message, a collection can still stop the loop (its
// held wait ends on the runtime's preemption signal), and a session that
// ends while the loop holds its waits is handed on. With goroutines waiting
// for a P, or no P to spare, the loop never holds one.
func TestEventLoopHoldsItsWaitForOneSessionYetYieldsToTheRuntime(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	// session makes n round trips through a loop of its own (collecting
	// now and then when collect) and returns the session and the loop's
	// held waits.
	session := func(n int, collect bool) (*loopSession, int64) {
		ls, err := newEvLoops(1, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ls.close)
		x := startLoopSession(t, ls, nil)
		for i := 0; i < n; i++ {
			if err := x.roundTrip(t, "SELECT 1", 1, 10); err != nil {
				t.Fatal(err)
			}
			if collect && i%25 == 0 {
				time.Sleep(2 * time.Millisecond) // inside a held wait by now
				runtime.GC()
			}
		}
		return x, heldWaits(ls.loops[0])
	}

	trackHeldThread.Store(true)
	x, held := session(300, true)
	trackHeldThread.Store(false)
	if held == 0 {
		t.Fatal("one session in use, a P to spare: the loop never held its wait")
	}
	// A stretch of held waits keeps its thread, through the collections'
	// preemptions too: a loop moved between threads is moved between CPUs.
	changes := make(chan int64, 1)
	x.es.lp.do(func() { changes <- x.es.lp.heldThreadChanges })
	if n := <-changes; n != 0 {
		t.Errorf("holding its waits, the loop moved to another thread %d times", n)
	}
	// Held waits take the loop out of Go's poller, which would otherwise
	// wake a thread of its own at every event.
	// The look must come while the loop holds its waits: right after a
	// round trip, since a quiet held wait ends after heldWaitMillis and
	// the loop parks in the poller again (registered, rightly). Other
	// packages' tests running beside this one can leave goroutines
	// waiting for a P for a moment, or keep this one from running for
	// longer than that, and then the loop rightly waits in Go's poller:
	// look again, each time after a round trip, before calling it wrong.
	// (Until December 2026 the looks came 20 ms apart with no traffic
	// between, so only the first could find a held wait, and a CI run
	// on a loaded machine failed.)
	lp := x.es.lp
	registered := make(chan bool, 1)
	for deadline := time.Now().Add(3 * time.Second); ; {
		if err := x.roundTrip(t, "SELECT 1", 1, 10); err != nil {
			t.Fatal(err)
		}
		lp.do(func() { registered <- lp.poller.f != nil })
		if !<-registered {
			break
		}
		if time.Now().After(deadline) {
			t.Error("holding its waits, the loop is still registered in Go's poller")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	x.client.Write(encodeAll(t, &pgproto3.Terminate{}))
	select {
	case r := <-x.ended:
		if !r.reusable {
			t.Error("a Terminate at a boundary: the backend was not handed back")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the session's end was not handed on")
	}

	// Goroutines waiting for a P: the rest of the server needs the P.
	stop := make(chan struct{})
	var spinners sync.WaitGroup
	for i := 0; i < 4; i++ {
		spinners.Add(1)
		go func() {
			defer spinners.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	_, held = session(30, false)
	close(stop)
	spinners.Wait()
	if held != 0 {
		t.Errorf("goroutines waiting for a P: the loop held %d waits", held)
	}

	runtime.GOMAXPROCS(1)
	if _, held := session(100, false); held != 0 {
		t.Errorf("no P to spare: the loop held %d waits", held)
	}
}

// TestEventLoopLosesNoQueuedWork: work queued while the loop handles a
// batch that holds the eventfd's wake-up runs, also when nothing else
// happens on the loop afterwards. The eventfd was once drained after the
// queue was taken, which swallowed the wake-up of work queued in between:
// a stop that never ended (seen in CI), a session with pipelined bytes
// that never started.
func TestEventLoopLosesNoQueuedWork(t *testing.T) {
	ls, err := newEvLoops(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.close()
	lp := ls.loops[0]
	for i := 0; i < 3000; i++ {
		ran := make(chan struct{}, 2)
		start := make(chan struct{})
		for range 2 {
			go func() {
				<-start
				lp.do(func() { ran <- struct{}{} })
			}()
		}
		close(start)
		for k := 0; k < 2; k++ {
			select {
			case <-ran:
			case <-time.After(5 * time.Second):
				t.Fatalf("round %d: queued work did not run on a quiet loop", i)
			}
		}
	}
}

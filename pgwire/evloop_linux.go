//go:build linux

package pgwire

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/internal/awake"
	"github.com/pgwarden/pgwarden/metrics"
)

// The event-loop relay carries plaintext sessions without a goroutine per
// session. A relay goroutine pair costs two stacks per idle client and, per
// message, a netpoller wake-up, a read, a write and a read that finds
// EAGAIN; an epoll loop costs one epoll_wait, one read and one write per
// message, and an idle session is a few hundred bytes of state. Each loop is
// one goroutine; sessions are spread over the loops round robin.
//
// Level-triggered epoll keeps the state machine simple: a side is read only
// while the bytes last read from it have all been written to the other side,
// so a slow reader holds at most one read's worth of bytes (backpressure
// without unbounded buffering), and nothing is read that cannot be passed on.

// loopReadSize is the read buffer each loop shares among its sessions.
const loopReadSize = 64 << 10

// trackHeldThread makes the loops note the thread of each held wait (a
// system call each), for tests.
var trackHeldThread atomic.Bool

// evLoops is the set of loops of a server.
type evLoops struct {
	loops []*evLoop
	next  atomic.Uint32
}

func newEvLoops(n int, keeper *awake.Keeper) (*evLoops, error) {
	ls := &evLoops{}
	for i := 0; i < n; i++ {
		lp, err := newEvLoop()
		if err != nil {
			ls.close()
			return nil, err
		}
		lp.loops, lp.keeper = n, keeper
		ls.loops = append(ls.loops, lp)
		go lp.run()
	}
	return ls, nil
}

func (ls *evLoops) pick() *evLoop {
	return ls.loops[int(ls.next.Add(1))%len(ls.loops)]
}

// close ends every session still in a loop and stops the loops.
func (ls *evLoops) close() {
	for _, lp := range ls.loops {
		lp.do(func() {
			for _, s := range lp.sessions() {
				s.end(false)
			}
			lp.stopping = true
		})
		<-lp.done
	}
}

// evLoop is one epoll instance and the goroutine that waits on it. Only that
// goroutine touches its sessions; other goroutines queue work with do.
type evLoop struct {
	epfd   int
	wakefd int
	done   chan struct{}

	mu    sync.Mutex
	queue []func()
	dead  bool // the loop has stopped; its descriptors are closed

	byFD      map[int32]*evSession
	lingering map[*evSession]struct{} // sessions with a deadline
	buf       []byte
	gen       int32        // the last session's generation; under mu
	wakes     atomic.Int64 // eventfd writes, for tests
	win       uint32       // the active window, to count each session once
	stopping  bool
	loops     int   // loops in the process
	churn     bool  // a session began or ended in this window
	heldWaits int64 // held waits made (for tests)
	// heldTid is the thread of the current stretch of held waits, and
	// heldThreadChanges counts held waits made on another thread within
	// a stretch (for tests, which set trackHeldThread).
	heldTid           int
	heldThreadChanges int64
	// keeper is touched once a window in which sessions had events.
	keeper *awake.Keeper
	// poller is the loop's registration in Go's poller (run's own).
	poller *loopPoller
}

func newEvLoop() (*evLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return &evLoop{epfd: epfd, wakefd: wakefd, done: make(chan struct{}),
		byFD: map[int32]*evSession{}, lingering: map[*evSession]struct{}{}, buf: make([]byte, loopReadSize)}, nil
}

// do runs f on the loop's goroutine.
func (lp *evLoop) do(f func()) {
	lp.mu.Lock()
	if lp.dead {
		// Stopped: every session it had has ended.
		lp.mu.Unlock()
		return
	}
	lp.queue = append(lp.queue, f)
	lp.wakeLocked()
	lp.mu.Unlock()
}

// wakeLocked wakes the loop for its queue; lp.mu is held, so the loop
// cannot close the eventfd meanwhile.
func (lp *evLoop) wakeLocked() {
	lp.wakes.Add(1)
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(lp.wakefd, one[:])
}

func (lp *evLoop) sessions() []*evSession {
	seen := map[*evSession]bool{}
	var out []*evSession
	for _, s := range lp.byFD {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// A loop with one session in use waits in epoll_wait itself (held wait)
// rather than in Go's poller: a wake-up through the poller costs the
// scheduler's hand-off and the spinning of idle threads, which one client's
// every message pays in full. With several sessions in use, the poller's
// spinning finds the next events without a thread going to sleep, which
// costs less than a sleep and a wake-up per event; then the loop parks in
// the poller as before. A held wait keeps the loop's thread and P, so it is
// used only while the process has a P more than it has loops and no
// goroutine waits for one, never in a window in which sessions began or
// ended (logins need that P), and it ends after heldWaitMillis without
// events, when the loop parks in the poller and holds nothing.
const (
	heldWaitMaxActive = 1 // sessions with events in the last window
	heldWaitMillis    = 2 // a quiet held wait ends and the loop parks
	activeWindow      = time.Millisecond
)

// goroutinesWaiting says whether goroutines wait for a P: then the rest of
// the server (logins, HTTP, TLS sessions) needs the one a held wait would
// keep, and the loop parks in the poller instead. Reading it costs a few
// hundred nanoseconds, once a window.
func goroutinesWaiting() bool {
	s := [1]rtmetrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}}
	rtmetrics.Read(s[:])
	return s[0].Value.Kind() == rtmetrics.KindUint64 && s[0].Value.Uint64() > 0
}

// loopPoller registers a loop's epoll descriptor in Go's poller (a
// duplicate of it, readable while the loop has events) for the loop's
// waits there. During held waits it is released: Go's poller would
// otherwise hear of every event too (the duplicate is the same epoll
// instance) and wake a thread of its own for each, to find no goroutine
// waiting: about two thread switches per transaction at one client.
type loopPoller struct {
	epfd   int
	f      *os.File
	rc     syscall.RawConn
	broken bool // Go's poller would not take it: the loop blocks in epoll_wait
}

// usable registers the descriptor when it is not: false when it cannot be.
func (p *loopPoller) usable() bool {
	if p.f != nil || p.broken {
		return !p.broken
	}
	dup, err := unix.FcntlInt(uintptr(p.epfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		p.broken = true
		return false
	}
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		p.broken = true
		return false
	}
	f := os.NewFile(uintptr(dup), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		p.broken = true
		return false
	}
	p.f, p.rc = f, rc
	return true
}

// release takes the descriptor out of Go's poller (closing the duplicate).
func (p *loopPoller) release() {
	if p.f != nil {
		p.f.Close()
		p.f, p.rc = nil, nil
	}
}

func (lp *evLoop) run() {
	defer func() {
		lp.mu.Lock()
		lp.dead = true
		unix.Close(lp.epfd)
		unix.Close(lp.wakefd)
		lp.mu.Unlock()
		close(lp.done)
	}()
	// The loop waits in Go's own poller, on the epoll descriptor (readable
	// while events are ready): a goroutine parked there holds no thread and
	// no P, where a blocking epoll_wait would hold both and keep the rest of
	// the server (logins, HTTP) waiting for the scheduler to take the P back.
	// The wait always begins with a look (epoll_wait with timeout 0), so an
	// event that came while the last batch was handled is not missed. While
	// one session is in use, it makes held waits instead (see
	// heldWaitMaxActive).
	lp.poller = &loopPoller{epfd: lp.epfd}
	poller := lp.poller
	defer poller.release()
	events := make([]unix.EpollEvent, 128)
	// active counts the sessions with events in the current window;
	// held says whether the last window had few enough for a held wait.
	var window time.Time
	active, held := 0, false
	// locked: the loop keeps its thread while it makes held waits. Left to
	// the scheduler, the goroutine moved between threads within a stretch
	// of them (after a preemption, the yield that follows it), and the
	// kernel then moved the new thread between CPUs to follow its wakers: at one client
	// 0.2 to 1.5 CPU migrations per transaction, where PgBouncer's one
	// thread makes almost none. In the poller it must not keep it: a locked
	// goroutine that parks there costs two thread hand-offs per wake-up.
	locked := false
	defer func() {
		if locked {
			runtime.UnlockOSThread()
		}
	}()
	for {
		n := 0
		// Sessions that begin and end are logins and goodbyes, whose work
		// (and the goroutine an end starts, which waits on this P) needs
		// the P a held wait would keep.
		holding := held && !lp.churn && len(lp.lingering) == 0
		if holding != locked {
			if holding {
				runtime.LockOSThread()
			} else {
				runtime.UnlockOSThread()
				lp.heldTid = 0
			}
			locked = holding
		}
		if holding {
			lp.heldWaits++
			if trackHeldThread.Load() {
				if tid := unix.Gettid(); lp.heldTid != 0 && tid != lp.heldTid {
					lp.heldThreadChanges++
				} else {
					lp.heldTid = tid
				}
			}
			poller.release()
			var err error
			n, err = awake.HeldEpollWait(lp.epfd, events, heldWaitMillis)
			switch {
			case err == unix.EINTR:
				// The runtime wants this P (a collection, a preemption):
				// yield here, since nothing on the way back to the wait
				// would (the system call's path has no preemption check).
				runtime.Gosched()
				continue
			case err != nil || n == 0:
				held = false // quiet: park in the poller, holding nothing
				continue
			}
		} else if poller.usable() {
			if len(lp.lingering) > 0 {
				poller.f.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			} else {
				poller.f.SetReadDeadline(time.Time{})
			}
			poller.rc.Read(func(fd uintptr) bool {
				n, _ = unix.EpollWait(lp.epfd, events, 0)
				return n > 0
			})
		} else {
			timeout := -1
			if len(lp.lingering) > 0 {
				timeout = 50
			}
			var err error
			n, err = unix.EpollWait(lp.epfd, events, timeout)
			if err != nil {
				n = 0
				if !errors.Is(err, unix.EINTR) {
					time.Sleep(time.Millisecond)
				}
			}
		}
		if n < 0 {
			n = 0
		}
		if now := time.Now(); now.Sub(window) >= activeWindow {
			held = !poller.broken && active <= heldWaitMaxActive && !lp.churn && awake.WorkProcs() > lp.loops && !goroutinesWaiting()
			if active > 0 {
				lp.keeper.Touch()
			}
			window, active, lp.churn = now, 0, false
			lp.win++
		}
		// The queue first: a session add registered without a wake-up
		// is taken in before the events of its sockets are handled. And
		// the eventfd is drained before the queue is taken: drained after,
		// it could swallow the wake-up of work queued in between, which
		// would then wait for an unrelated event (for ever, on a quiet
		// loop: a stop that never ended, a session with pipelined bytes
		// never started).
		for i := 0; i < n; i++ {
			if events[i].Fd == int32(lp.wakefd) {
				var b [8]byte
				unix.Read(lp.wakefd, b[:])
				break
			}
		}
		lp.mu.Lock()
		queue := lp.queue
		lp.queue = nil
		lp.mu.Unlock()
		for _, f := range queue {
			f()
		}
		for i := 0; i < n; i++ {
			ev := events[i]
			if ev.Fd == int32(lp.wakefd) {
				continue // drained above
			}
			s := lp.byFD[ev.Fd]
			if s == nil || s.gen != ev.Pad {
				continue // an event of a session that ended in this batch
			}
			if s.win != lp.win {
				s.win = lp.win
				active++
			}
			s.handle(int(ev.Fd), ev.Events)
		}
		if len(lp.lingering) > 0 {
			now := time.Now()
			for s := range lp.lingering {
				if now.After(s.deadline) {
					s.end(false)
				}
			}
		}
		for lp.stopping && len(lp.byFD) == 0 {
			// Nothing may be left in the queue (a session added without
			// a wake-up, a kill): once dead is set under mu, nothing
			// more comes, and what came ends at once (start sees
			// stopping).
			lp.mu.Lock()
			queue := lp.queue
			lp.queue = nil
			lp.dead = len(queue) == 0
			lp.mu.Unlock()
			if len(queue) == 0 {
				return
			}
			for _, f := range queue {
				f()
			}
		}
	}
}

// evResult is how a session left its loop.
type evResult struct {
	reusable  bool // the backend is idle at a message boundary: bfd is handed back
	backendFD int
	keptState bool
	// owe: the client left while the backend owes answers; bfd is handed
	// back to be abandoned, not reused.
	owe *owedAnswers
}

// evSession is one relayed session in a loop. Its fields are the loop
// goroutine's, except where noted.
type evSession struct {
	lp       *evLoop
	gen      int32
	win      uint32 // the loop's window in which it last had events
	cfd, bfd int
	cEv, bEv uint32 // the events each fd is registered for

	// Bytes read from one side that the other has not taken yet. While a
	// direction holds bytes, its source is not read.
	toBackend, toClient []byte

	up, down msgScanner
	watch    sqlWatch
	session  *backend.Session // its Params only, kept up to date
	syncs    int64
	readies  int64
	status   byte
	copyIn   bool // the backend waits for the client's COPY data
	unsynced bool

	bParked     bool // the backend hung up and is out of epoll until toClient drains
	terminated  bool // the client sent Terminate at a boundary: finish and reuse
	clientGone  bool // writes to the client failed: its output is dropped
	terminating bool // the server ends the session: tell the client 57P01
	closing     bool // flushing to the client before the end
	deadline    time.Time
	ended       bool
	addFailed   bool // its sockets could not be put in the epoll set

	metrics *metrics.Metrics
	onEnd   func(evResult) // run on a goroutine of its own
}

// detachFD takes a socket away from Go's poller: the returned descriptor
// refers to the same socket, and c is closed (which neither shuts the
// socket down nor touches the peer).
func detachFD(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	c.Close()
	return nfd, nil
}

// attachFD makes a net.Conn of a backend descriptor a loop handed back,
// which then owns fd.
func attachFD(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "backend")
	if f == nil {
		return nil, errors.New("not a descriptor")
	}
	return &fileConn{f}, nil
}

// canLoop reports whether c is a plain socket the loop can carry.
func canLoop(c net.Conn) bool {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn, *fileConn:
		return true
	}
	return false
}

// add starts relaying: pending holds client bytes already read (pipelined
// during authentication).
//
// Without pending bytes nothing is to be done until the client or the
// backend sends, so the session's sockets go into the loop's epoll set
// here, with the interest a new session has, and the loop takes the
// session in before it handles the events that wake it: no wake-up of
// its own (an eventfd write, a read and a turn of the loop per login).
func (lp *evLoop) add(s *evSession, pending []byte) {
	lp.mu.Lock()
	if lp.dead {
		// Stopped: every session it had has ended.
		lp.mu.Unlock()
		return
	}
	lp.gen++
	s.gen = lp.gen
	if len(pending) == 0 {
		in := uint32(unix.EPOLLIN | unix.EPOLLRDHUP)
		// Queued first, so that the loop, which takes its queue under mu
		// before it handles a batch, knows the session by the time an
		// event of its sockets can reach it.
		lp.queue = append(lp.queue, func() { lp.start(s, nil, true) })
		err := unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, s.cfd, &unix.EpollEvent{Events: in, Fd: int32(s.cfd), Pad: s.gen})
		if err == nil {
			if err = unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, s.bfd, &unix.EpollEvent{Events: in, Fd: int32(s.bfd), Pad: s.gen}); err != nil {
				unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, s.cfd, nil)
			}
		}
		if err == nil {
			s.cEv, s.bEv = in, in
			lp.mu.Unlock()
			return
		}
		// Not in the set: the queued start ends it, woken as below.
		s.addFailed = true
		lp.wakeLocked()
		lp.mu.Unlock()
		return
	}
	lp.queue = append(lp.queue, func() { lp.start(s, pending, false) })
	lp.wakeLocked()
	lp.mu.Unlock()
}

// start takes a session in on the loop's goroutine; registered: add put
// its sockets in the epoll set already.
func (lp *evLoop) start(s *evSession, pending []byte, registered bool) {
	lp.churn = true
	s.status = 'I'
	if lp.stopping || s.addFailed {
		s.end(false)
		return
	}
	s.up = msgScanner{
		stream:  s.watch.wants,
		onStart: s.watch.start,
		onPart:  s.watch.feed,
	}
	s.up.onMsg = s.fromClientMsg
	s.down = msgScanner{capture: func(typ byte) bool { return typ == 'Z' || typ == 'S' }, onMsg: s.fromBackendMsg}
	lp.byFD[int32(s.cfd)] = s
	lp.byFD[int32(s.bfd)] = s
	if !registered {
		if err := unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, s.cfd, &unix.EpollEvent{Fd: int32(s.cfd), Pad: s.gen}); err != nil {
			s.end(false)
			return
		}
		if err := unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, s.bfd, &unix.EpollEvent{Fd: int32(s.bfd), Pad: s.gen}); err != nil {
			unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, s.cfd, nil)
			s.end(false)
			return
		}
	}
	if len(pending) > 0 {
		s.fromClient(pending)
	}
	if !s.ended {
		s.interest()
	}
}

// kill ends the session now (KILL, a dropped user, a hard close).
func (s *evSession) kill() {
	s.lp.do(func() {
		if !s.ended {
			s.end(false)
		}
	})
}

// terminate ends the session because the server stops: the backend is
// closed, and the client is told 57P01 at a message boundary before its
// socket closes (a second at most).
func (s *evSession) terminate() {
	s.lp.do(func() {
		if s.ended || s.terminating {
			return
		}
		s.terminating = true
		s.dropBackend()
		if s.clientGone || s.terminated || !s.down.atBoundary() {
			s.end(false)
			return
		}
		s.toClient = append(s.toClient, terminationMessage...)
		s.linger(time.Second)
		s.flushClient()
	})
}

func (s *evSession) linger(d time.Duration) {
	s.closing = true
	s.deadline = time.Now().Add(d)
	s.lp.lingering[s] = struct{}{}
	s.interest()
}

// handle is one epoll event of fd.
func (s *evSession) handle(fd int, events uint32) {
	if fd == s.cfd {
		if events&unix.EPOLLOUT != 0 || (s.closing && events&(unix.EPOLLERR|unix.EPOLLHUP) != 0) {
			s.flushClient()
			if s.ended {
				return
			}
		}
		if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 && s.cEv&unix.EPOLLIN != 0 {
			s.readClient()
		} else if events&(unix.EPOLLHUP|unix.EPOLLERR) != 0 && !s.ended {
			// Gone while not being read (its Terminate came, or its bytes
			// wait for the backend).
			s.clientLeft()
		}
	} else if fd == s.bfd {
		if events&unix.EPOLLOUT != 0 {
			s.flushBackend()
			if s.ended {
				return
			}
		}
		if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 && s.bEv&unix.EPOLLIN != 0 {
			s.readBackend()
		} else if events&(unix.EPOLLHUP|unix.EPOLLERR) != 0 && !s.ended {
			// The backend hung up while its bytes wait for a slow client:
			// what it sent last (a FATAL, say) may still be unread. Stop
			// watching it until the client has taken what is pending, then
			// read it to the end.
			unix.EpollCtl(s.lp.epfd, unix.EPOLL_CTL_DEL, s.bfd, nil)
			s.bParked = true
		}
	}
	if !s.ended {
		s.interest()
	}
}

func readFD(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return n, err
	}
}

func writeFD(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			return 0, nil
		}
		if n < 0 {
			n = 0
		}
		return n, err
	}
}

func (s *evSession) readClient() {
	n, err := readFD(s.cfd, s.lp.buf)
	if errors.Is(err, unix.EAGAIN) {
		return
	}
	if n <= 0 {
		// The client left without Terminate, or failed.
		s.clientLeft()
		return
	}
	s.fromClient(s.lp.buf[:n])
}

// clientLeft: the client's socket ended. After its Terminate that is
// expected (the backend may still be finishing); before, the session ends.
func (s *evSession) clientLeft() {
	if s.terminated {
		s.clientGone = true
		s.toClient = nil
		s.dropClient()
		s.tryFinish()
		return
	}
	s.end(false)
}

// dropClient closes the client side of a session whose client said
// Terminate and left, while the backend finishes.
func (s *evSession) dropClient() {
	if s.cfd < 0 {
		return
	}
	unix.EpollCtl(s.lp.epfd, unix.EPOLL_CTL_DEL, s.cfd, nil)
	delete(s.lp.byFD, int32(s.cfd))
	unix.Close(s.cfd)
	s.cfd = -1
}

// fromClient passes client bytes on, stopping at Terminate.
func (s *evSession) fromClient(chunk []byte) {
	cut := s.up.feed(chunk, 'X')
	if cut >= 0 {
		chunk = chunk[:cut]
	}
	if len(chunk) > 0 {
		s.metrics.RelayedUp(len(chunk))
		if !s.send(s.bfd, &s.toBackend, chunk) {
			s.end(false)
			return
		}
	}
	if cut >= 0 {
		// Anything after Terminate is ignored, as PostgreSQL does.
		if !s.up.atBoundary() || s.unsynced {
			s.end(false)
			return
		}
		s.terminated = true
		s.watch.kept.start()
		s.deadline = time.Now().Add(2 * time.Second)
		s.lp.lingering[s] = struct{}{}
		s.tryFinish()
	}
}

func (s *evSession) fromClientMsg(typ byte, _ []byte) {
	if s.up.streams {
		s.watch.end()
	}
	switch typ {
	case 'Q', 'S':
		s.syncs++
		s.unsynced = false
	case 'F':
		// A fast-path call names its function by oid: it may be set_config
		// or dblink_connect.
		s.watch.kept.found = true
		s.syncs++
		s.unsynced = false
	case 'd', 'c', 'f', 'H':
		// COPY data and its end belong to the Query that started it;
		// Flush asks for nothing new.
	default:
		s.unsynced = true
	}
}

func (s *evSession) fromBackendMsg(typ byte, body []byte) {
	switch typ {
	case 'Z':
		if len(body) == 1 {
			s.status = body[0]
		}
		s.readies++
		s.copyIn = false
	case 'S':
		if name, value, ok := parseParameterStatus(body); ok {
			s.session.SetParam(name, value)
		}
	case 'G', 'W':
		s.copyIn = true
	}
}

func (s *evSession) readBackend() {
	n, err := readFD(s.bfd, s.lp.buf)
	if errors.Is(err, unix.EAGAIN) {
		return
	}
	if n <= 0 {
		// The backend closed (it ended the session, or died): what the
		// client has not taken yet is still delivered, for a second.
		s.dropBackend()
		if len(s.toClient) > 0 && !s.clientGone {
			s.linger(time.Second)
			return
		}
		s.end(false)
		return
	}
	chunk := s.lp.buf[:n]
	s.down.feed(chunk, 0)
	if !s.clientGone {
		s.metrics.RelayedDown(n)
		if !s.send(s.cfd, &s.toClient, chunk) {
			// Keep reading the backend to a boundary.
			s.clientGone = true
			s.toClient = nil
			if !s.terminated {
				s.end(false)
				return
			}
		}
	}
	if s.terminated {
		s.tryFinish()
	}
}

// send writes b to fd, keeping what fd does not take now in *pending; false
// when fd failed.
func (s *evSession) send(fd int, pending *[]byte, b []byte) bool {
	if len(*pending) > 0 {
		*pending = append(*pending, b...)
		return true
	}
	n, err := writeFD(fd, b)
	if err != nil {
		return false
	}
	if n < len(b) {
		*pending = append(make([]byte, 0, len(b)-n), b[n:]...)
	}
	return true
}

func (s *evSession) flushClient() {
	if len(s.toClient) > 0 && !s.clientGone {
		n, err := writeFD(s.cfd, s.toClient)
		if err != nil {
			s.clientGone = true
			s.toClient = nil
		} else {
			s.toClient = s.toClient[n:]
		}
	}
	if len(s.toClient) == 0 {
		s.toClient = nil
		if s.closing {
			s.end(false)
			return
		}
		if s.bParked && s.bfd >= 0 {
			s.bParked = false
			s.bEv = unix.EPOLLIN | unix.EPOLLRDHUP
			if err := unix.EpollCtl(s.lp.epfd, unix.EPOLL_CTL_ADD, s.bfd, &unix.EpollEvent{Events: s.bEv, Fd: int32(s.bfd), Pad: s.gen}); err != nil {
				s.end(false)
				return
			}
		}
	}
	if s.terminated {
		s.tryFinish()
	}
}

func (s *evSession) flushBackend() {
	if len(s.toBackend) == 0 || s.bfd < 0 {
		return
	}
	n, err := writeFD(s.bfd, s.toBackend)
	if err != nil {
		s.end(false)
		return
	}
	s.toBackend = s.toBackend[n:]
	if len(s.toBackend) == 0 {
		s.toBackend = nil
	}
}

// tryFinish ends a session whose client said Terminate once the backend
// has answered everything, outside a transaction, at a message boundary.
func (s *evSession) tryFinish() {
	if s.ended || !s.terminated {
		return
	}
	if s.readies == s.syncs && s.status != 'I' {
		s.end(false) // left inside a transaction: not reusable, no need to wait
		return
	}
	if s.readies == s.syncs && s.status == 'I' && s.down.atBoundary() && len(s.toBackend) == 0 && s.bfd >= 0 {
		if len(s.toClient) > 0 && !s.clientGone {
			// A last try for a client that may still read; it is leaving.
			writeFD(s.cfd, s.toClient)
		}
		s.end(true)
	}
}

// interest registers for what the session can use now.
func (s *evSession) interest() {
	var c, b uint32
	if !s.terminated && !s.closing && len(s.toBackend) == 0 {
		c |= unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if len(s.toClient) > 0 && !s.clientGone {
		c |= unix.EPOLLOUT
	}
	if !s.closing && (len(s.toClient) == 0 || s.clientGone) {
		b |= unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if len(s.toBackend) > 0 {
		b |= unix.EPOLLOUT
	}
	if s.cfd >= 0 && c != s.cEv {
		s.cEv = c
		unix.EpollCtl(s.lp.epfd, unix.EPOLL_CTL_MOD, s.cfd, &unix.EpollEvent{Events: c, Fd: int32(s.cfd), Pad: s.gen})
	}
	if s.bfd >= 0 && !s.bParked && b != s.bEv {
		s.bEv = b
		unix.EpollCtl(s.lp.epfd, unix.EPOLL_CTL_MOD, s.bfd, &unix.EpollEvent{Events: b, Fd: int32(s.bfd), Pad: s.gen})
	}
}

// dropBackend closes the backend side.
func (s *evSession) dropBackend() {
	if s.bfd < 0 {
		return
	}
	unix.EpollCtl(s.lp.epfd, unix.EPOLL_CTL_DEL, s.bfd, nil)
	delete(s.lp.byFD, int32(s.bfd))
	unix.Close(s.bfd)
	s.bfd = -1
	s.toBackend = nil
}

// end leaves the loop. A reusable backend's descriptor goes to onEnd, and
// so does one that still owes answers (the pool keeps counting it until
// it has answered, see backend.Pool.Abandon); everything else is closed.
func (s *evSession) end(reusable bool) {
	if s.ended {
		return
	}
	s.ended = true
	s.lp.churn = true
	delete(s.lp.lingering, s)
	if s.cfd >= 0 {
		unix.EpollCtl(s.lp.epfd, unix.EPOLL_CTL_DEL, s.cfd, nil)
		delete(s.lp.byFD, int32(s.cfd))
		unix.Close(s.cfd)
		s.cfd = -1
	}
	res := evResult{backendFD: -1, keptState: s.watch.kept.found}
	if s.bfd >= 0 {
		unix.EpollCtl(s.lp.epfd, unix.EPOLL_CTL_DEL, s.bfd, nil)
		delete(s.lp.byFD, int32(s.bfd))
		if !reusable {
			res.owe = answersOwed(&s.down, s.syncs, s.readies, s.copyIn)
		}
		if reusable || res.owe != nil {
			res.reusable, res.backendFD = reusable, s.bfd
		} else {
			unix.Close(s.bfd)
		}
		s.bfd = -1
	}
	s.toClient, s.toBackend = nil, nil
	if s.onEnd != nil {
		go s.onEnd(res)
	} else if res.backendFD >= 0 {
		unix.Close(res.backendFD)
	}
}

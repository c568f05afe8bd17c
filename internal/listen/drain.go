package listen

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Listener is a TCP or unix listener that can be drained: closed without
// resetting the connections its kernel backlog already holds.
//
// Closing a listening socket resets every connection queued in its accept
// backlog. A client (or a load balancer) whose handshake completed has
// already been told it is connected, so the reset reaches it as "server
// closed the connection unexpectedly", and a balancer does not retry it
// elsewhere. Drain takes the backlog first and stops listening in the same
// breath, so only a connection whose handshake is in flight during those few
// microseconds can still be reset; the kernel offers no way to refuse new
// SYNs on a listener that is still accepting (a socket filter would, where
// the kernel allows one).
type Listener struct {
	net.Listener

	draining atomic.Bool
	once     sync.Once
	closed   sync.Once     // runs OnClose
	done     chan struct{} // closed when Drain has taken the backlog

	mu     sync.Mutex
	queued []net.Conn

	// OnClose, when set, runs once after the listener closes (a unix
	// socket's file is removed there, if it is still this listener's).
	OnClose func()
	// Name, when set, is the address Addr reports: a unix socket bound
	// under another name and renamed.
	Name net.Addr
}

// Addr is the listener's address (Name, when set).
func (l *Listener) Addr() net.Addr {
	if l.Name != nil {
		return l.Name
	}
	return l.Listener.Addr()
}

// Wrap makes ln drainable; ln must be a *net.TCPListener or a
// *net.UnixListener.
func Wrap(ln net.Listener) *Listener {
	return &Listener{Listener: ln, done: make(chan struct{})}
}

// Accept returns the next connection. During and after Drain it returns
// the connections Drain took from the backlog, then net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil || !l.draining.Load() {
		return c, err
	}
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queued) == 0 {
		return nil, net.ErrClosed
	}
	c = l.queued[0]
	l.queued = l.queued[1:]
	return c, nil
}

type deadliner interface {
	SetDeadline(time.Time) error
}

// Drain stops listening at once, so new connections are refused, while
// every connection already queued in the backlog is kept for Accept to
// return. The listener is closed afterwards.
func (l *Listener) Drain() {
	l.once.Do(func() {
		l.draining.Store(true)
		// An Accept blocked in the poller returns now and waits for done.
		if d, ok := l.Listener.(deadliner); ok {
			d.SetDeadline(time.Unix(1, 0))
		}
		var fds []int
		if rc := rawConn(l.Listener); rc != nil {
			rc.Control(func(fd uintptr) {
				for {
					nfd, err := acceptNonblock(int(fd))
					if err == unix.EINTR || err == unix.ECONNABORTED {
						continue
					}
					if err != nil {
						break
					}
					fds = append(fds, nfd)
				}
				// Shutting a listening socket stops it listening (new SYNs
				// are answered with RST, unix connects are refused) without
				// waiting for the Accept that may still hold the fd.
				unix.Shutdown(int(fd), unix.SHUT_RD)
			})
		}
		var conns []net.Conn
		for _, nfd := range fds {
			f := os.NewFile(uintptr(nfd), "")
			c, err := net.FileConn(f)
			f.Close()
			if err != nil {
				continue
			}
			// As the net package sets on the connections it accepts.
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetNoDelay(true)
				tc.SetKeepAlive(true)
			}
			conns = append(conns, c)
		}
		l.mu.Lock()
		l.queued = conns
		l.mu.Unlock()
		close(l.done)
		l.Listener.Close()
		// The accept loop takes what was queued; closing the server
		// before it has would lose those connections.
		deadline := time.Now().Add(time.Second)
		for l.pending() > 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	})
}

func (l *Listener) pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queued)
}

func rawConn(ln net.Listener) syscall.RawConn {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// Close closes the listener; connections Drain took and Accept has not
// returned are closed too.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	err := l.Listener.Close()
	l.mu.Lock()
	for _, c := range l.queued {
		c.Close()
	}
	l.queued = nil
	l.mu.Unlock()
	if errors.Is(err, net.ErrClosed) && l.draining.Load() {
		err = nil
	}
	if l.OnClose != nil {
		l.closed.Do(l.OnClose)
	}
	return err
}

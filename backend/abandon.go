package backend

import (
	"crypto/tls"
	"net"
	"syscall"
	"time"

	"github.com/pgwarden/pgwarden/internal/sockpeek"
)

// Abandon discards a backend whose client left while the backend still
// owes it answers (a statement running, or queued behind one). The
// backend stays counted in max_backend_connections until it has answered,
// not merely until pgwarden closes its socket: PostgreSQL notices a closed
// connection only when it next writes or reads, so a statement that
// writes nothing until it ends runs to its end, and until December 2026
// pgwarden stopped counting it at once, so a user who started long
// statements and left, again and again, opened backends past the limit
// until PostgreSQL's max_connections refused everyone.
//
// pgwarden shuts its side for writing (a backend with
// client_connection_check_interval notices that within the interval and
// ends) and reads what the backend sends, handing each chunk to answered,
// which reports when the backend owes nothing more. Then, or when the
// backend closes, the socket is closed and the slot is free. Pool.Close
// closes every backend still owing.
func (p *Pool) Abandon(s *Session, answered func(chunk []byte) bool) {
	c := s.Conn
	p.mu.Lock()
	select {
	case <-p.stop:
		p.mu.Unlock()
		p.Discard(s)
		return
	default:
	}
	if p.ending == nil {
		p.ending = map[net.Conn]struct{}{}
	}
	p.ending[c] = struct{}{}
	p.endings.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.endings.Done()
		awaitAnswers(c, answered)
		c.Close()
		p.mu.Lock()
		delete(p.ending, c)
		p.closedLocked(1)
		p.mu.Unlock()
		p.closed.Add(1)
	}()
}

// closeEnding closes the backends still owing answers (see Abandon) and
// waits, a second at most, for their goroutines.
func (p *Pool) closeEnding() {
	p.mu.Lock()
	for c := range p.ending {
		c.Close()
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() {
		p.endings.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

// awaitAnswers shuts c down for writing and reads until answered says the
// backend owes nothing more, or c ends.
func awaitAnswers(c net.Conn, answered func(chunk []byte) bool) {
	c.SetReadDeadline(time.Time{})
	closeWrite(c)
	buf := make([]byte, 8<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 && answered(buf[:n]) {
			return
		}
		if err != nil {
			return
		}
	}
}

// closeWrite ends what pgwarden sends on c: over TLS a close_notify, then
// the socket's FIN below it (which is what client_connection_check_interval
// watches for).
func closeWrite(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		// A backend busy in a statement may not be reading: the alert
		// must not wait for room in a full socket.
		tc.SetWriteDeadline(time.Now().Add(time.Second))
		tc.CloseWrite()
	}
	c = sockpeek.Below(c)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { shutdownWrite(fd) })
		}
	}
}

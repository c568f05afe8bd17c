package backend

import (
	"crypto/tls"
	"net"
	"syscall"
	"time"
)

// Discard ends a backend that may not be reused. It stays counted in
// max_backend_connections until PostgreSQL lets it go, not merely until
// pgwarden closes its socket: a backend whose client left in the middle of
// a statement runs that statement to its end (PostgreSQL notices a closed
// connection only when it next reads or writes), and until December 2026
// pgwarden closed the socket and stopped counting it at once, so a user
// who started long statements and left, again and again, opened backends
// past the limit until PostgreSQL's max_connections refused everyone.
//
// So pgwarden shuts down its side for writing, which an idle backend reads
// as the end of the session (it ends at once) and which a backend with
// client_connection_check_interval notices within the interval, and waits
// for the backend's first bytes or its close: a statement's end (its
// answer, which nobody will read) or PostgreSQL's own. Then it closes the
// socket, and the slot is free. A backend that was sending when its client
// left ends at its next write, as it would with its client connected
// directly. Pool.Close closes every backend still ending.
func (p *Pool) Discard(s *Session) {
	c := s.Conn
	p.mu.Lock()
	select {
	case <-p.stop:
		p.closedLocked(1)
		p.mu.Unlock()
		p.closeAll([]*Session{s})
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
		awaitBackendEnd(c)
		c.Close()
		p.mu.Lock()
		delete(p.ending, c)
		p.closedLocked(1)
		p.mu.Unlock()
		p.closed.Add(1)
	}()
}

// closeEnding closes the backends still ending (see Discard) and waits, a
// second at most, for their goroutines.
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

// awaitBackendEnd shuts c down for writing and returns at the backend's
// first bytes, its close, or an error. A socket it cannot shut down that
// way returns at once (it is closed then, as before).
func awaitBackendEnd(c net.Conn) {
	c.SetReadDeadline(time.Time{})
	if !closeWrite(c) {
		return
	}
	var buf [512]byte
	c.Read(buf[:])
}

// closeWrite ends what pgwarden sends on c: over TLS a close_notify, then
// the socket's FIN below it (which is what client_connection_check_interval
// watches for). It reports whether the FIN went.
func closeWrite(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		// A backend busy in a statement may not be reading: the alert
		// must not wait for room in a full socket.
		tc.SetWriteDeadline(time.Now().Add(time.Second))
		tc.CloseWrite()
		c = tc.NetConn()
	}
	for i := 0; i < 4; i++ {
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = nc.NetConn()
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite() == nil
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = shutdownWrite(fd) }); err != nil {
		return false
	}
	return serr == nil
}

// Package sockpeek looks at a socket without reading from it and without
// waiting: whether bytes wait there or the peer closed it. pgwarden asks
// that of backend connections that sit idle between clients, since a
// backend that was terminated (a restart, pg_terminate_backend, an idle
// timeout) says so with a FATAL message and a close that nobody reads
// until the next client's request has already been sent.
package sockpeek

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// State is what a look at a socket found.
type State int

const (
	Unknown State = iota // not a socket that can be looked into
	Quiet                // nothing to read, not closed
	Pending              // bytes wait to be read
	Closed               // the peer closed it (or it failed)
)

// FD looks at the socket descriptor fd (MSG_PEEK|MSG_DONTWAIT).
func FD(fd uintptr) State {
	var b [1]byte
	for {
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EWOULDBLOCK):
			return Quiet
		case err == nil && n > 0:
			return Pending
		default:
			return Closed
		}
	}
}

// Conn looks at c's socket, under a TLS connection or a wrapper that
// names it (NetConn) at the socket below (a TLS record waiting there
// counts as bytes). Only a plain TCP or unix
// socket is looked into, never a reader with buffered bytes of its own:
// Unknown for anything else.
func Conn(c net.Conn) State {
	rc, ok := PlainRawConn(Below(c))
	if !ok {
		return Unknown
	}
	return Raw(rc)
}

// Below is the connection under c's TLS and wrappers that name what they
// wrap (NetConn): the socket, when c is one over a socket.
func Below(c net.Conn) net.Conn {
	for i := 0; i < 4; i++ { // a TLS connection over a wrapper, say
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = nc.NetConn()
	}
	return c
}

// PlainRawConn is c's socket when c is a plain TCP or unix socket itself,
// never a TLS connection or a wrapper, whose bytes must go through them.
func PlainRawConn(c net.Conn) (syscall.RawConn, bool) {
	var sc syscall.Conn
	switch x := c.(type) {
	case *net.TCPConn:
		sc = x
	case *net.UnixConn:
		sc = x
	default:
		return nil, false
	}
	rc, err := sc.SyscallConn()
	return rc, err == nil
}

// Raw looks at the socket of rc, safe against a concurrent close (Control
// holds the descriptor open) and never waiting. Not through rc.Read: that
// takes the descriptor's read lock, which a goroutine blocked reading the
// same socket holds (pgconn's background reader stays in its read after a
// slow write until the backend sends something, which an idle backend
// never does), so the look waited for ever.
func Raw(rc syscall.RawConn) State {
	state := Unknown
	rc.Control(func(fd uintptr) { state = FD(fd) })
	return state
}

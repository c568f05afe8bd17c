package pgwire

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// socketState is what a non-consuming look at a socket found.
type socketState int

const (
	socketUnknown socketState = iota // not a socket pgwarden can look into
	socketQuiet                      // nothing to read, not closed
	socketPending                    // bytes wait to be read
	socketClosed                     // the peer closed it (or it failed)
)

// rawSocket is the socket below c (below a TLS connection, its transport),
// when it is one pgwarden may look into: a plain TCP or unix socket, never
// a reader with buffered bytes of its own.
func rawSocket(c net.Conn) (syscall.RawConn, bool) {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = nc.NetConn()
	}
	var sc syscall.Conn
	switch x := c.(type) {
	case *net.TCPConn:
		sc = x
	case *net.UnixConn:
		sc = x
	default:
		if fc, ok := asFileConn(c); ok {
			sc = fc
			break
		}
		return nil, false
	}
	rc, err := sc.SyscallConn()
	return rc, err == nil
}

// peekSocket looks at c without reading from it and without waiting
// (MSG_PEEK|MSG_DONTWAIT), under a TLS connection at the socket below.
func peekSocket(c net.Conn) socketState {
	raw, ok := rawSocket(c)
	if !ok {
		return socketUnknown
	}
	state := socketUnknown
	raw.Read(func(fd uintptr) bool {
		state = peekFD(fd)
		return true // never wait for readiness
	})
	return state
}

// peekFD is peekSocket's look, on a descriptor.
func peekFD(fd uintptr) socketState {
	var b [1]byte
	for {
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EWOULDBLOCK):
			return socketQuiet
		case err == nil && n > 0:
			return socketPending
		default:
			return socketClosed
		}
	}
}

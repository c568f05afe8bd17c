package pgwire

import (
	"errors"
	"net"

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

// peekSocket looks at c without reading from it and without waiting
// (MSG_PEEK|MSG_DONTWAIT), under a TLS connection at the socket below.
func peekSocket(c net.Conn) socketState {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = nc.NetConn()
	}
	var raw interface {
		Read(func(uintptr) bool) error
	}
	switch x := c.(type) {
	case *net.TCPConn:
		r, err := x.SyscallConn()
		if err != nil {
			return socketUnknown
		}
		raw = r
	case *net.UnixConn:
		r, err := x.SyscallConn()
		if err != nil {
			return socketUnknown
		}
		raw = r
	default:
		return socketUnknown
	}
	state := socketUnknown
	raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EWOULDBLOCK):
			state = socketQuiet
		case err == nil && n > 0:
			state = socketPending
		default:
			state = socketClosed
		}
		return true // never wait for readiness
	})
	return state
}

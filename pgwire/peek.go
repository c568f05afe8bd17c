package pgwire

import (
	"errors"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// fileConn is a backend socket an event loop handed back (attachFD), as a
// net.Conn over an *os.File. The descriptor is non-blocking, so os.NewFile
// puts it in Go's poller (reads, writes and deadlines wait there, and Close
// is safe against them) with two system calls, where net.FileConn makes
// twelve at every session end: a duplicate and the close of the original,
// three address and type lookups, and the five TCP options the socket
// already has. Nothing asks a parked backend for its addresses.
type fileConn struct{ *os.File }

func (c *fileConn) LocalAddr() net.Addr  { return fileAddr{} }
func (c *fileConn) RemoteAddr() net.Addr { return fileAddr{} }

type fileAddr struct{}

func (fileAddr) Network() string { return "backend" }
func (fileAddr) String() string  { return "backend" }

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
	case *fileConn:
		sc = x
	default:
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

package pgwire

import (
	"errors"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pgwarden/pgwarden/internal/sockpeek"
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

// The states of a look at a socket (sockpeek).
const (
	socketUnknown = sockpeek.Unknown
	socketQuiet   = sockpeek.Quiet
	socketPending = sockpeek.Pending
	socketClosed  = sockpeek.Closed
)

// rawSocket is the socket below c (below a TLS connection, its transport),
// when it is one pgwarden may look into: a plain TCP or unix socket, never
// a reader with buffered bytes of its own.
func rawSocket(c net.Conn) (syscall.RawConn, bool) {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = nc.NetConn()
	}
	if s, ok := c.(*tlsSocket); ok {
		c = s.Conn
	}
	return plainRawConn(c)
}

// peekSocket looks at c without reading from it and without waiting,
// under a TLS connection at the socket below.
func peekSocket(c net.Conn) sockpeek.State {
	raw, ok := rawSocket(c)
	if !ok {
		return socketUnknown
	}
	return sockpeek.Raw(raw)
}

// plainRawConn is c's socket when c is one itself: a TCP or unix socket,
// or a backend socket an event loop handed back (never a TLS connection,
// whose bytes must go through its records).
func plainRawConn(c net.Conn) (syscall.RawConn, bool) {
	if fc, ok := c.(*fileConn); ok {
		rc, err := fc.SyscallConn()
		return rc, err == nil
	}
	return sockpeek.PlainRawConn(c)
}

// writeAwaitingAnswer writes msg to c and returns once c has bytes to
// read, is closed, or its read deadline passed (the read that follows
// tells which). The usual write then read finds nothing yet, in all but
// the fastest answers: a read system call for EAGAIN before Go's poller
// waits. Here the wait comes first: msg is written from inside the wait's
// own callback, after Go's poller forgot the socket's earlier readiness.
// So bytes that were already in the socket do not end the wait, only
// bytes that arrive after msg: use it only where the peer sends new bytes
// in answer to msg (a backend answering a query, a client that cannot have
// answered msg before it had it). Not a plain socket (TLS, a wrapper), or
// a socket buffer too full to take msg at once: written as usual, and
// nothing awaited.
func writeAwaitingAnswer(c net.Conn, msg []byte) error {
	rc, ok := plainRawConn(c)
	if !ok {
		_, err := c.Write(msg)
		return err
	}
	rest, written := msg, false
	var werr error
	rc.Read(func(fd uintptr) bool {
		if written {
			return true // readable, closed, or woken: the read will see
		}
		for len(rest) > 0 {
			n, err := unix.Write(int(fd), rest)
			if n > 0 {
				rest = rest[n:]
			}
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				if !errors.Is(err, unix.EAGAIN) {
					werr = os.NewSyscallError("write", err)
				}
				return true
			}
		}
		written = true
		return false // wait for the answer
	})
	// rc.Read's own error (deadline, closed) is the next read's too.
	if werr != nil || len(rest) == 0 {
		return werr
	}
	_, err := c.Write(rest)
	return err
}

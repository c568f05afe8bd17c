// Package listen opens TCP listeners, with SO_REUSEPORT when asked.
package listen

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// TCP opens a listener on addr. With reusePort (server.reuse_port) it sets
// SO_REUSEPORT, so a new process can listen on the same address beside the
// old one during an upgrade and no connection is refused in between; the
// kernel spreads new connections over both until the old one closes its
// listeners (SIGTERM).
func TCP(addr string, reusePort bool) (net.Listener, error) {
	lc := net.ListenConfig{}
	if reusePort {
		lc.Control = func(network, address string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	return lc.Listen(context.Background(), "tcp", addr)
}

// StopSYNs makes a TCP listener drop new connection attempts (a socket
// filter that passes nothing) while the connections already queued in its
// backlog can still be accepted. Closing a listener resets those queued
// connections, which a load balancer has already handed to clients: a
// drain stops SYNs first, accepts what is queued, then closes. A client
// whose SYN was dropped retries, and its balancer sends it elsewhere.
func StopSYNs(ln net.Listener) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		drop := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &drop[0]})
	})
	if err != nil {
		return err
	}
	return serr
}

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
// listeners (SIGTERM). Accepted connections have TCP_NODELAY and keepalive
// (15 s idle, 15 s between probes, 9 probes), as the net package's default.
func TCP(addr string, reusePort bool) (*Listener, error) {
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
	inheritKeepAlive(&lc)
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	return Wrap(ln), nil
}

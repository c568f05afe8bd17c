package listen

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Keepalive of accepted connections, as Go's net package sets by default:
// the first probe after 15 s idle, then every 15 s, 9 unanswered probes
// and the connection is dead (about 2.5 minutes for a client that went
// away without a FIN, whose backend is then freed).
const (
	keepAliveIdleSeconds     = 15
	keepAliveIntervalSeconds = 15
	keepAliveCount           = 9
)

// inheritKeepAlive sets keepalive on the listening socket, where Linux
// copies it to every socket accepted from it, and turns off the net
// package's own setting of it on each accepted connection: four system
// calls per connection (SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL,
// TCP_KEEPCNT) saved on every login.
func inheritKeepAlive(lc *net.ListenConfig) {
	lc.KeepAlive = -1
	prev := lc.Control
	lc.Control = func(network, address string, rc syscall.RawConn) error {
		if prev != nil {
			if err := prev(network, address, rc); err != nil {
				return err
			}
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			for _, o := range []struct{ level, opt, v int }{
				{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
				{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepAliveIdleSeconds},
				{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepAliveIntervalSeconds},
				{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
			} {
				if serr = unix.SetsockoptInt(int(fd), o.level, o.opt, o.v); serr != nil {
					return
				}
			}
		}); err != nil {
			return err
		}
		return serr
	}
}

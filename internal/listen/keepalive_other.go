//go:build !linux

package listen

import "net"

// inheritKeepAlive leaves keepalive to the net package, which sets it on
// every accepted connection: whether accepted sockets inherit the
// listener's keepalive timings differs between systems.
func inheritKeepAlive(lc *net.ListenConfig) {}

//go:build !linux

package pgwire

import (
	"fmt"
	"net"
)

// peerUser needs SO_PEERCRED, which only Linux has; elsewhere the peer
// method refuses, as PostgreSQL does on platforms without peer credentials.
func peerUser(net.Conn) (string, error) {
	return "", fmt.Errorf("peer authentication is not supported on this platform")
}

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

// peerCredsSupported: no SO_PEERCRED here, so no cancel hand-over to a
// draining process either (see handoff.go).
const peerCredsSupported = false

func peerUID(net.Conn) (uint32, error) {
	return 0, fmt.Errorf("peer credentials are not supported on this platform")
}

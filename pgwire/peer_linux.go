package pgwire

import (
	"fmt"
	"net"
	"os/user"
	"strconv"

	"golang.org/x/sys/unix"
)

// peerCredsSupported: SO_PEERCRED is there.
const peerCredsSupported = true

// peerUser returns the OS user name of the process at the other end of a
// unix socket, from SO_PEERCRED, as PostgreSQL's peer method reads it.
func peerUser(c net.Conn) (string, error) {
	uid, err := peerUID(c)
	if err != nil {
		return "", err
	}
	u, err := user.LookupId(strconv.Itoa(int(uid)))
	if err != nil {
		return "", fmt.Errorf("could not look up local user ID %d: %v", uid, err)
	}
	return u.Username, nil
}

// peerUID is the user id of the process at the other end of a unix socket
// (SO_PEERCRED: for a connecting side, of the process that listened).
func peerUID(c net.Conn) (uint32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("peer authentication needs the unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, credErr
	}
	return cred.Uid, nil
}

//go:build !linux

package listen

import (
	"syscall"

	"golang.org/x/sys/unix"
)

func acceptNonblock(fd int) (int, error) {
	// As the net package does where accept4 is missing.
	syscall.ForkLock.RLock()
	nfd, _, err := unix.Accept(fd)
	if err == nil {
		unix.CloseOnExec(nfd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, err
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return -1, err
	}
	return nfd, nil
}

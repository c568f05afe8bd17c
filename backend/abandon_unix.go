//go:build unix

package backend

import "syscall"

func shutdownWrite(fd uintptr) error { return syscall.Shutdown(int(fd), syscall.SHUT_WR) }

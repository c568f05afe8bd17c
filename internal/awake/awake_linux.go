package awake

import (
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Start runs a Keeper unless PGWARDEN_SYSMON_KEEPER is "off" (for
// measuring without it); nil when it does not run.
func Start() *Keeper {
	if os.Getenv("PGWARDEN_SYSMON_KEEPER") == "off" {
		return nil
	}
	return start(10*time.Millisecond, time.Second)
}

func start(hold, quiet time.Duration) *Keeper {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	k := &Keeper{kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		hold: hold, quiet: quiet, procs: runtime.GOMAXPROCS(0)}
	reserved.Add(1)
	runtime.GOMAXPROCS(k.procs + 1)
	events := make([]unix.EpollEvent, 1)
	go func() {
		defer unix.Close(epfd)
		// An empty set: each wait lasts d, or ends early at a signal.
		k.run(func(d time.Duration) { HeldEpollWait(epfd, events, int(d.Milliseconds())) })
	}()
	return k
}

// HeldEpollWait is epoll_wait made without telling the scheduler (a raw
// system call): the goroutine keeps its thread and its P while it blocks,
// and the runtime counts that P as running. The runtime still preempts it
// (for a collection, or after 10 ms) with a signal, which ends the wait
// with EINTR; the caller must then yield. It returns 0 when msec passed
// without events. The keeper holds its P with it; the event loops make
// their held waits with it.
func HeldEpollWait(epfd int, events []unix.EpollEvent, msec int) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(msec), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

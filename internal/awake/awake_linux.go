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
		k.run(func(d time.Duration) { holdFor(epfd, events, d) })
	}()
	return k
}

// holdFor blocks in epoll_wait on an empty set for d without telling the
// scheduler (a raw system call): the goroutine keeps its thread and its P,
// which the runtime counts as running. A preemption signal ends the wait
// early (EINTR).
func holdFor(epfd int, events []unix.EpollEvent, d time.Duration) {
	unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(d.Milliseconds()), 0, 0)
}

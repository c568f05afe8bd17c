package main

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// notifier tells systemd (a Type=notify unit) what the process is doing:
// READY=1 once every listener accepts, RELOADING=1 and READY=1 around a
// reload, STOPPING=1 at shutdown, and WATCHDOG=1 pings when the unit has
// WatchdogSec. Without $NOTIFY_SOCKET every call does nothing.
type notifier struct{ log *zap.Logger }

func (n notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn("could not notify systemd", zap.Error(err))
	}
}

func (n notifier) ready(status string) { n.send("READY=1\nSTATUS=" + status) }

// reloading carries MONOTONIC_USEC, which systemd's notify-reload units
// require to match a reload to its READY=1.
func (n notifier) reloading() {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	n.send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/1000))
}

func (n notifier) stopping(status string) { n.send("STOPPING=1\nSTATUS=" + status) }

// watchdog pings systemd at half the unit's WatchdogSec until ctx ends. The
// pings come from the process's own scheduler, so a process that hangs
// (a deadlock, a stuck runtime) stops them and systemd restarts it.
func (n notifier) watchdog(ctx context.Context) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		n.log.Warn("WATCHDOG_USEC is not usable; no watchdog pings", zap.Error(err))
		return
	}
	if interval <= 0 {
		return
	}
	n.log.Info("systemd watchdog on", zap.Duration("interval", interval))
	go func() {
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n.send("WATCHDOG=1")
			}
		}
	}()
}

package integration

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSystemdHearsReadyReloadWatchdogAndStopping stands in for systemd: a
// notification socket of the test's own, NOTIFY_SOCKET and WATCHDOG_USEC
// in pgwarden's environment, as a Type=notify unit with WatchdogSec gives.
func TestSystemdHearsReadyReloadWatchdogAndStopping(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func(want string) string {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("socket closed waiting for %q", want)
				}
				if strings.Contains(m, want) {
					return m
				}
			case <-deadline:
				t.Fatalf("no %q from pgwarden", want)
			}
		}
	}
	g := startGatewayWith(t, gwOptions{env: []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=400000"}},
		"[[hba]]\nmethod = \"trust\"\n", []testUser{{name: "alice", password: "alice-Pass-1"}})

	// READY=1 comes once the listeners accept (start returned when the
	// port did), with a status line for systemctl status.
	if m := next("READY=1"); !strings.Contains(m, "STATUS=serving 1 rule, 1 user") {
		t.Fatalf("READY without the status: %q", m)
	}
	c, err := net.Dial("tcp", g.addr())
	if err != nil {
		t.Fatalf("READY=1 sent before the listener accepts: %v", err)
	}
	c.Close()
	// Watchdog pings at half of WATCHDOG_USEC.
	start := time.Now()
	next("WATCHDOG=1")
	next("WATCHDOG=1")
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("two watchdog pings took %v for a 400ms watchdog", el)
	}
	// A reload says RELOADING=1 (with MONOTONIC_USEC), then READY=1.
	g.signal(syscall.SIGHUP)
	if m := next("RELOADING=1"); !strings.Contains(m, "MONOTONIC_USEC=") {
		t.Fatalf("RELOADING without MONOTONIC_USEC: %q", m)
	}
	next("READY=1")
	// SIGTERM: STOPPING=1 at the start of the drain.
	g.signal(syscall.SIGTERM)
	next("STOPPING=1")
	select {
	case <-g.done:
	case <-time.After(20 * time.Second):
		t.Fatal("pgwarden did not stop")
	}
}

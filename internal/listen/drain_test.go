package listen

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDrainServesTheBacklog queues connections in the kernel's backlog
// (nobody accepts yet), drains, and checks that every one of them is served
// and that the address refuses new connections afterwards.
func TestDrainServesTheBacklog(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = filepath.Join(t.TempDir(), "s")
			}
			raw, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			ln := Wrap(raw)
			addr = ln.Addr().String()
			const n = 20
			var clients []net.Conn
			for range n {
				c, err := net.DialTimeout(network, addr, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				clients = append(clients, c)
			}
			drained := make(chan struct{})
			go func() {
				ln.Drain()
				close(drained)
			}()
			var wg sync.WaitGroup
			accepted := 0
			for {
				c, err := ln.Accept()
				if err != nil {
					if !errors.Is(err, net.ErrClosed) {
						t.Fatalf("Accept after the backlog: %v, want net.ErrClosed", err)
					}
					break
				}
				accepted++
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.Write([]byte("ok"))
					c.Close()
				}()
			}
			<-drained
			wg.Wait()
			if accepted != n {
				t.Errorf("accepted %d connections, want %d", accepted, n)
			}
			for i, c := range clients {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				b, err := io.ReadAll(c)
				if err != nil || string(b) != "ok" {
					t.Errorf("client %d got %q, %v; want ok", i, b, err)
				}
			}
			_, err = net.DialTimeout(network, addr, time.Second)
			if err == nil || !(errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)) {
				t.Errorf("dial after Drain: %v, want connection refused", err)
			}
			if err := ln.Close(); err != nil {
				t.Errorf("Close after Drain: %v", err)
			}
		})
	}
}

// TestCloseWithoutDrain: a plain Close ends a blocked Accept with
// net.ErrClosed, as a net.Listener's does.
func TestCloseWithoutDrain(t *testing.T) {
	ln, err := TCP("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	ln.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
}

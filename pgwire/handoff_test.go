package pgwire

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/config"
)

// A process that does not know a key hands the CancelRequest to the
// draining process of its address, whole, and only to one of its own
// user: a local user who took the name first must not learn the keys.
func TestACancelIsHandedOnlyToADrainingProcessOfTheSameUser(t *testing.T) {
	if !peerCredsSupported {
		t.Log("no SO_PEERCRED on this platform: nothing is handed over")
		return
	}
	cfg := &config.Config{}
	cfg.Server.PGListen = []string{fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(40000))}
	ln, err := net.Listen("unix", drainingName(cfg, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := func() []byte {
		got := make(chan []byte, 1)
		go receiveHandedOver(ln, got)
		return <-got
	}
	key := []byte{1, 2, 3, 4}
	done := make(chan []byte)
	go func() { done <- received() }()
	handToDraining(cfg, 4242, key)
	if got := <-done; !bytes.Equal(got, backend.CancelRequestPacket(4242, key)) {
		t.Fatalf("the draining process got %x", got)
	}

	defer func(f func(uint32) bool) { trustedUID = f }(trustedUID)
	trustedUID = func(uint32) bool { return false } // the listener is another user's
	go func() { done <- received() }()
	handToDraining(cfg, 4242, key)
	if got := <-done; len(got) != 0 {
		t.Fatalf("a listener of another user got %x", got)
	}
	// Keys of another length are not this build's: not handed over.
	trustedUID = func(uint32) bool { return true }
	go func() { done <- received() }()
	handToDraining(cfg, 4242, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	ln.(*net.UnixListener).SetDeadline(time.Now().Add(500 * time.Millisecond))
	if got := <-done; len(got) != 0 {
		t.Fatalf("an 8-byte key was handed over: %x", got)
	}
}

// A process that begins to drain while another still does (an upgrade
// during an upgrade) listens on the next slot, and a request is handed to
// every slot held: the key is one of them's at most.
func TestACancelIsHandedToEveryDrainingProcess(t *testing.T) {
	if !peerCredsSupported {
		t.Log("no SO_PEERCRED on this platform: nothing is handed over")
		return
	}
	cfg := &config.Config{}
	cfg.Server.PGListen = []string{fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(40000))}
	got := make(chan []byte, 2)
	for _, slot := range []int{0, 2} {
		ln, err := net.Listen("unix", drainingName(cfg, slot))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go receiveHandedOver(ln, got)
	}
	key := []byte{9, 8, 7, 6}
	handToDraining(cfg, 77, key)
	for i := 0; i < 2; i++ {
		if b := <-got; !bytes.Equal(b, backend.CancelRequestPacket(77, key)) {
			t.Fatalf("a draining process got %x", b)
		}
	}
}

// receiveHandedOver stands for a draining process: it accepts one
// connection on ln and sends on got all that came over it (nil when none
// came). The sender waits for it to close, so it reads one CancelRequest
// and then whatever follows within a moment, not until the sender closes.
func receiveHandedOver(ln net.Listener, got chan<- []byte) {
	c, err := ln.Accept()
	if err != nil {
		got <- nil
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	b := make([]byte, 16)
	n, _ := io.ReadFull(c, b)
	c.SetDeadline(time.Now().Add(100 * time.Millisecond))
	rest, _ := io.ReadAll(c)
	got <- append(b[:n], rest...)
}

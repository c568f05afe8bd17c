package pgwire

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/certs"
)

// tlsPair is a TLS connection over loopback TCP: the server's end, as
// pgwarden holds a client's (over a tlsSocket), and the client's end,
// whose writes to the socket go through write (to split records across
// TCP segments).
func tlsPair(t *testing.T, write func(net.Conn, []byte) (int, error)) (server *tls.Conn, client *tls.Conn) {
	t.Helper()
	ca, err := certs.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(certs.Template{CommonName: "localhost", Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{leaf.DER}, PrivateKey: leaf.Key}
	raw, sraw := tcpPair(t)
	server = tls.Server(&tlsSocket{Conn: sraw}, &tls.Config{Certificates: []tls.Certificate{cert}})
	client = tls.Client(&splitConn{Conn: raw, write: write}, &tls.Config{InsecureSkipVerify: true})
	errs := make(chan error, 1)
	go func() { errs <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// splitConn passes its writes through write.
type splitConn struct {
	net.Conn
	write func(net.Conn, []byte) (int, error)
}

func (c *splitConn) Write(p []byte) (int, error) {
	if c.write == nil {
		return c.Conn.Write(p)
	}
	return c.write(c.Conn, p)
}

// holdRecords makes the client's records wait; each call of the returned
// function writes all that waited to the socket at once (one TCP segment).
func holdRecords(t *testing.T, client *tls.Conn) (release func()) {
	var mu sync.Mutex
	var held bytes.Buffer
	raw := client.NetConn().(*splitConn)
	raw.write = func(c net.Conn, p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return held.Write(p)
	}
	return func() {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if _, err := raw.Conn.Write(held.Bytes()); err != nil {
			t.Fatal(err)
		}
		held.Reset()
	}
}

// pumpAll runs pumpClient on server until it ends, collecting every chunk.
func pumpAll(server *tls.Conn) (got chan []byte, done chan error) {
	got, done = make(chan []byte, 1), make(chan error, 1)
	go func() {
		var all bytes.Buffer
		err := pumpClient(server, func(b []byte) bool { all.Write(b); return true }, false)
		got <- all.Bytes()
		done <- err
	}()
	return got, done
}

// A relay reading a TLS client waits on its socket and then takes every
// record TLS holds: records coalesced in one TCP segment, a record split
// over many segments written apart, and messages larger than a record all
// arrive whole and in order, and the client's close ends the pump.
func TestPumpTLSReadsEveryRecord(t *testing.T) {
	var mu sync.Mutex
	slow := false
	server, client := tlsPair(t, func(c net.Conn, p []byte) (int, error) {
		mu.Lock()
		s := slow
		mu.Unlock()
		if !s {
			return c.Write(p)
		}
		// A record in 7-byte pieces, a pause between them.
		for i := 0; i < len(p); i += 7 {
			end := min(i+7, len(p))
			if _, err := c.Write(p[i:end]); err != nil {
				return i, err
			}
			time.Sleep(time.Millisecond)
		}
		return len(p), nil
	})
	got, done := pumpAll(server)
	var want bytes.Buffer
	send := func(p []byte) {
		t.Helper()
		want.Write(p)
		if _, err := client.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	// Many small records back to back: several arrive in one read.
	for i := 0; i < 200; i++ {
		send([]byte{'Q', 0, 0, 0, 5, byte(i)})
	}
	// Larger than a record (16 KiB), and than the pump's buffer.
	send(bytes.Repeat([]byte("abcdefgh"), 10000))
	// Then records trickling in pieces, with pauses: the pump waits for
	// the rest of a record, then for the socket again.
	mu.Lock()
	slow = true
	mu.Unlock()
	for i := 0; i < 3; i++ {
		time.Sleep(20 * time.Millisecond)
		send([]byte("a record split over many segments"))
	}
	client.Close()
	select {
	case b := <-got:
		if !bytes.Equal(b, want.Bytes()) {
			t.Fatalf("pumped %d bytes, want %d (equal prefix %d)", len(b), want.Len(), commonPrefix(b, want.Bytes()))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the pump did not end after the client closed")
	}
	if err := <-done; err != nil && err != io.EOF {
		t.Logf("pump ended with %v", err)
	}
}

// A record that arrives while the pump is busy with the one before must
// not wait for a later one: each answer is awaited before the next write.
func TestPumpTLSLosesNoWakeup(t *testing.T) {
	server, client := tlsPair(t, nil)
	echoed := make(chan []byte, 1)
	go pumpClient(server, func(b []byte) bool {
		echoed <- append([]byte(nil), b...)
		return true
	}, false)
	for i := 0; i < 2000; i++ {
		msg := []byte{byte(i), byte(i >> 8)}
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
		select {
		case b := <-echoed:
			if !bytes.Equal(b, msg) {
				t.Fatalf("round %d: got %v, want %v", i, b, msg)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: a record was not read", i)
		}
	}
}

// Records that arrive together are all passed on before the pump waits
// for the socket again: TLS reads them from the socket in one go and hands
// out one per read, so a pump that waited after the first would sit on the
// rest until the client wrote again.
func TestPumpTLSTakesRecordsTLSAlreadyHolds(t *testing.T) {
	server, client := tlsPair(t, nil)
	release := holdRecords(t, client)
	var total int
	var pumped sync.Mutex
	go pumpClient(server, func(b []byte) bool {
		pumped.Lock()
		total += len(b)
		pumped.Unlock()
		return true
	}, false)
	for round := 1; round <= 20; round++ {
		for i := 0; i < 10; i++ {
			if _, err := client.Write([]byte("0123456789")); err != nil {
				t.Fatal(err)
			}
		}
		release()
		deadline := time.Now().Add(5 * time.Second)
		pumped.Lock()
		for total < round*100 && time.Now().Before(deadline) {
			pumped.Unlock()
			time.Sleep(time.Millisecond)
			pumped.Lock()
		}
		got := total
		pumped.Unlock()
		if got != round*100 {
			t.Fatalf("round %d: %d of %d bytes passed on; the rest sat inside TLS", round, got, round*100)
		}
	}
}

// Records the login read from the socket along with its own last ones
// (a client that pipelined past authentication) sit inside TLS, and the
// socket will not tell of them again: they are passed on first, whether
// heldTLS took them on the login's goroutine (as sessions do) or the pump
// finds them itself; after them the pump waits for the socket.
func TestPumpTLSPassesOnWhatTheLoginLeftInsideTLS(t *testing.T) {
	for _, byLogin := range []bool{true, false} {
		t.Run(fmt.Sprintf("heldTLS=%v", byLogin), func(t *testing.T) {
			server, client := tlsPair(t, nil)
			release := holdRecords(t, client)
			// Two records in one TCP segment: the login's and one after it.
			client.Write([]byte("login"))
			client.Write([]byte("pipelined"))
			release()
			buf := make([]byte, 64)
			n, err := server.Read(buf)
			if err != nil || string(buf[:n]) != "login" {
				t.Fatalf("the login read %q, %v", buf[:n], err)
			}
			got := make(chan string, 2)
			if byLogin {
				held, err := heldTLS(server)
				if err != nil {
					t.Fatal(err)
				}
				got <- string(held)
			}
			go pumpClient(server, func(b []byte) bool {
				got <- string(b)
				return true
			}, byLogin)
			for _, want := range []string{"pipelined", "later"} {
				if want == "later" {
					if _, err := client.Write([]byte("later")); err != nil {
						t.Fatal(err)
					}
					release()
				}
				select {
				case s := <-got:
					if s != want {
						t.Fatalf("passed on %q, want %q", s, want)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("%q was not passed on", want)
				}
			}
		})
	}
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

package sockpeek

import (
	"net"
	"testing"
	"time"
)

// wrapped names its socket as a TLS connection does.
type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }

// TestALookSeesWaitingBytesAndACloseWithoutTakingThem: quiet, then bytes
// waiting (still there to read afterwards), then the peer's close; through
// a wrapper that names its socket too; anything else is unknown.
func TestALookSeesWaitingBytesAndACloseWithoutTakingThem(t *testing.T) {
	peer, c := tcpPair(t)
	defer c.Close()
	if got := Conn(c); got != Quiet {
		t.Fatalf("an idle socket: %v", got)
	}
	peer.Write([]byte("E"))
	waitFor(t, c, Pending)
	if got := Conn(wrapped{wrapped{c}}); got != Pending {
		t.Fatalf("through wrappers: %v", got)
	}
	b := make([]byte, 1)
	if n, err := c.Read(b); n != 1 || b[0] != 'E' {
		t.Fatalf("the look took the byte: %d %v", n, err)
	}
	if got := Conn(c); got != Quiet {
		t.Fatalf("after the read: %v", got)
	}
	peer.Close()
	waitFor(t, c, Closed)
	a, b2 := net.Pipe()
	defer a.Close()
	defer b2.Close()
	if got := Conn(a); got != Unknown {
		t.Fatalf("a pipe: %v", got)
	}
}

// tcpPair is both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (peer, c net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return peer, c
}

func waitFor(t *testing.T, c net.Conn, want State) {
	t.Helper()
	for i := 0; Conn(c) != want; i++ {
		if i == 200 {
			t.Fatalf("never %v: %v", want, Conn(c))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A look never waits for a reader of the same socket: pgconn's background
// reader stays blocked in a read of an idle backend's socket after a slow
// write, and a look that took the read lock waited with it for ever (every
// HTTP request then hung once the pool handed that connection out).
func TestALookBesideABlockedReaderAnswersAtOnce(t *testing.T) {
	peer, c := tcpPair(t)
	defer peer.Close()
	defer c.Close()
	read := make(chan struct{})
	go func() {
		defer close(read)
		c.Read(make([]byte, 1)) // blocks until the test closes c
	}()
	time.Sleep(50 * time.Millisecond) // the reader is in its read
	looked := make(chan State, 1)
	go func() { looked <- Conn(c) }()
	select {
	case got := <-looked:
		if got != Quiet {
			t.Fatalf("an idle socket with a reader blocked on it: %v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the look waited for the blocked reader")
	}
	c.Close()
	<-read
}

package backend

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/pgwarden/pgwarden/internal/membudget"
)

// chunkConn serves a byte stream in reads of the given sizes, in turn.
type chunkConn struct {
	net.Conn
	data   []byte
	sizes  []int
	i      int
	closed bool
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), c.sizes[c.i%len(c.sizes)])
	c.i++
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func (c *chunkConn) Close() error { c.closed = true; return nil }

// message is a backend message of type t with a body of n bytes.
func message(t byte, n int) []byte {
	b := make([]byte, 5+n)
	b[0] = t
	binary.BigEndian.PutUint32(b[1:], uint32(4+n))
	return b
}

// TestALargeBackendMessageTakesRoomBeforeItIsRead: the gate follows the
// headers however the stream is cut, takes twice a large body before the
// read that carries its header returns, keeps it until the next large
// message or the request's end, and refuses a message with no room
// before pgx could read its header (so it allocates nothing for it).
func TestALargeBackendMessageTakesRoomBeforeItIsRead(t *testing.T) {
	const large = gatedMessageBytes + 10
	var stream []byte
	stream = append(stream, message('T', 20)...)
	stream = append(stream, message('D', 3)...)
	stream = append(stream, message('D', large)...)
	stream = append(stream, message('C', 13)...)
	stream = append(stream, message('Z', 1)...)
	for _, sizes := range [][]int{{1}, {2, 3}, {7}, {4096}, {1 << 20}, {5, 1, 300000}} {
		b := membudget.New(1 << 30)
		c := &messageGate{r: &chunkConn{data: append([]byte(nil), stream...), sizes: sizes}, budget: b}
		buf := make([]byte, 64<<10)
		var got []byte
		var maxUsed int64
		for {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if hdr := len(message('T', 20)) + len(message('D', 3)); len(got) >= hdr+5 && b.Used() != 2*large {
				t.Fatalf("reads %v: the large message's header passed with %d taken, want %d", sizes, b.Used(), 2*large)
			}
			maxUsed = max(maxUsed, b.Used())
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if string(got) != string(stream) {
			t.Fatalf("reads %v: the stream changed on its way", sizes)
		}
		c.giveRoomBack() // the request's end (releaseMessageRoom)
		if b.Used() != 0 || maxUsed != 2*large {
			t.Fatalf("reads %v: used %d after the request, at most %d", sizes, b.Used(), maxUsed)
		}
	}

	// No room: the read that would pass the header fails, and nothing of
	// the message reaches the reader.
	b := membudget.New(2*large - 1)
	under := &chunkConn{data: append(message('D', 3), message('D', large)...), sizes: []int{1 << 20}}
	c := &messageGate{r: under, budget: b}
	n, err := c.Read(make([]byte, 1<<20))
	if n != 0 || !errors.Is(err, membudget.ErrExhausted) {
		t.Fatalf("a message with no room: read %d bytes, %v", n, err)
	}
	if b.Used() != 0 {
		t.Fatalf("a refused message took %d", b.Used())
	}

	// The socket's close gives back what the connection held.
	b = membudget.New(1 << 30)
	under = &chunkConn{data: message('D', large), sizes: []int{100}}
	socket := &poolSocket{Conn: under}
	frontend := gateMessages(b)(socket, socket)
	if _, err := frontend.Receive(); err != nil || b.Used() != 2*large {
		t.Fatalf("the header read: %v, used %d", err, b.Used())
	}
	socket.Close()
	if b.Used() != 0 || !under.closed {
		t.Fatalf("after close, used %d", b.Used())
	}
}

// A large message is taken for the client whose request reads it: one
// client's requests take at most half the budget, another's still find
// the rest, and a connection handed back serves no one.
func TestALargeMessageTakesRoomFromItsClientsHalf(t *testing.T) {
	const large = gatedMessageBytes
	b := membudget.New(4 * 2 * large)
	conn := func(source string) *messageGate {
		stream := append(message('D', large), message('D', large)...)
		return &messageGate{r: &chunkConn{data: stream, sizes: []int{1 << 20}}, budget: b, source: source}
	}
	a1, a2, a3 := conn("10.0.0.1"), conn("10.0.0.1"), conn("10.0.0.1")
	buf := make([]byte, 64)
	for _, c := range []*messageGate{a1, a2} {
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("within the client's half: %v", err)
		}
	}
	if _, err := a3.Read(buf); !errors.Is(err, membudget.ErrExhausted) {
		t.Fatalf("past the client's half: %v, used %d of %d", err, b.Used(), b.Capacity())
	}
	if _, err := conn("10.0.0.2").Read(buf); err != nil {
		t.Fatalf("another client: %v", err)
	}
	a1.giveRoomBack()
	if b.UsedBy("10.0.0.1") != 2*large || b.Used() != 4*large {
		t.Fatalf("after one was given back: the client %d, in all %d", b.UsedBy("10.0.0.1"), b.Used())
	}
}

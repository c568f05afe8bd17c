package backend

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/internal/membudget"
)

// An HTTP request's answer is built in memory (it goes out once its
// backend is back in the pool), so its backend's large messages are too:
// a row of one 30 MB value is held as the message pgx reads, as the value
// taken from it, and as the answer's JSON. http.max_result_bytes bounds one
// request; http.max_request_memory bounds them all together. The answer's
// JSON is counted by the HTTP frontend as it grows; the messages are
// counted here, before pgx reads a large one's header and makes room for
// its body, so that a hundred requests for large values cannot all have
// their messages in memory at once.

// gatedMessageBytes is the body size from which a backend message must
// find room in the budget: smaller ones cost every request at most a
// little, and counting them would cost every row.
const gatedMessageBytes = 256 << 10

// messageGate is an HTTP pool connection's stream from the backend as pgx
// reads it (above TLS and pgconn's own reader), followed message by
// message only as far as their headers. A large message takes twice its
// body from the budget (the message and the value read out of it), within
// the half of it that the client whose request reads it may take, before
// its header reaches pgx; the room is kept until the next large message,
// the end of the request (releaseMessageRoom) or the connection's close.
// With no room, the read fails with membudget.ErrExhausted and pgx closes
// the connection: nothing of the message was taken into memory.
//
// It reads for pgx's Frontend (gateMessages), not under pgconn as a
// net.Conn: pgconn binds SCRAM to the TLS channel only when its
// connection is the *tls.Conn itself, so a wrapped one logged in without
// channel binding, and [backend] channel_binding = "require" refused every
// HTTP request.
type messageGate struct {
	r      io.Reader
	budget *membudget.Budget

	// Read's own state; Read is never called concurrently.
	hdr    [5]byte
	hdrN   int
	remain int64

	mu      sync.Mutex
	granted atomic.Int64 // written under mu; read alone where 0 says enough
	// source is the client whose request uses the connection now
	// (WithMemorySource); grantedTo the one the room was taken for.
	source, grantedTo string
	closed            bool
}

type memorySourceKey struct{}

// WithMemorySource names, for the HTTP pools, the client a request's
// backend messages are taken from http.max_request_memory for: its
// requests may take at most half of it (membudget.Budget.TakeFor).
func WithMemorySource(ctx context.Context, source string) context.Context {
	return context.WithValue(ctx, memorySourceKey{}, source)
}

// lendTo records which client's request the connection serves now.
func lendTo(ctx context.Context, pc *pgconn.PgConn) {
	if g := gateOf(pc); g != nil {
		source, _ := ctx.Value(memorySourceKey{}).(string)
		g.mu.Lock()
		g.source = source
		g.mu.Unlock()
	}
}

// gateOf is the message gate of a pool connection, nil when it has none.
func gateOf(pc *pgconn.PgConn) *messageGate {
	if ps := poolSocketOf(pc.Conn()); ps != nil {
		return ps.gate.Load()
	}
	return nil
}

// gateMessages is the BuildFrontend of an HTTP pool's connections: pgx
// reads the backend's messages through a messageGate, which the
// connection's socket (poolSocket, from the pool's dial) keeps, so that
// the request using it can be named and its close gives the room back.
func gateMessages(budget *membudget.Budget) pgconn.BuildFrontendFunc {
	return func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		g := &messageGate{r: r, budget: budget}
		if c, ok := w.(net.Conn); ok {
			if ps := poolSocketOf(c); ps != nil {
				ps.gate.Store(g)
			}
		}
		return pgproto3.NewFrontend(g, w)
	}
}

func (c *messageGate) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		if gerr := c.scan(p[:n]); gerr != nil {
			return 0, gerr
		}
	}
	return n, err
}

// scan follows the message headers in b, the next bytes of the stream.
func (c *messageGate) scan(b []byte) error {
	for len(b) > 0 {
		if c.remain > 0 {
			k := min(int64(len(b)), c.remain)
			c.remain -= k
			b = b[k:]
			continue
		}
		k := copy(c.hdr[c.hdrN:], b)
		c.hdrN += k
		b = b[k:]
		if c.hdrN < len(c.hdr) {
			return nil
		}
		c.hdrN = 0
		// A length under 4 is pgx's to refuse; it has no body here.
		body := max(int64(binary.BigEndian.Uint32(c.hdr[1:]))-4, 0)
		c.remain = body
		if body >= gatedMessageBytes {
			if err := c.takeRoom(body); err != nil {
				return err
			}
		}
	}
	return nil
}

// takeRoom gives back the last large message's room and takes room for
// one of body bytes.
func (c *messageGate) takeRoom(body int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	c.budget.GiveFor(c.grantedTo, c.granted.Swap(0))
	if !c.budget.TakeFor(c.source, 2*body) {
		return fmt.Errorf("a backend message of %d bytes: %w", body, membudget.ErrExhausted)
	}
	c.granted.Store(2 * body)
	c.grantedTo = c.source
	return nil
}

// giveRoomBack gives back the room of the last large message.
func (c *messageGate) giveRoomBack() {
	if c.granted.Load() == 0 {
		return
	}
	c.mu.Lock()
	c.budget.GiveFor(c.grantedTo, c.granted.Swap(0))
	c.mu.Unlock()
}

// close gives back what the connection held; the connection's socket
// calls it as it closes.
func (c *messageGate) close() {
	c.mu.Lock()
	c.closed = true
	c.budget.GiveFor(c.grantedTo, c.granted.Swap(0))
	c.mu.Unlock()
}

// releaseMessageRoom gives back what a connection's large messages held,
// once its request has read them all; the connection serves no client
// until it is lent again.
func releaseMessageRoom(pc *pgconn.PgConn) {
	if g := gateOf(pc); g != nil {
		g.giveRoomBack()
		g.mu.Lock()
		g.source = ""
		g.mu.Unlock()
	}
}

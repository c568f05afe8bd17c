package backend

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"

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

// gatedConn is an HTTP pool connection's stream from the backend, above
// TLS, read message by message only as far as their headers. A large
// message takes twice its body from the budget (the message and the value
// read out of it), within the half of it that the client whose request
// reads it may take, before its header reaches pgx; the room is kept until
// the next large message, the end of the request (releaseMessageRoom) or
// the connection's close. With no room, the read fails with
// membudget.ErrExhausted and pgx closes the connection: nothing of the
// message was taken into memory.
type gatedConn struct {
	net.Conn
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
	if gc, ok := pc.Conn().(*gatedConn); ok {
		source, _ := ctx.Value(memorySourceKey{}).(string)
		gc.mu.Lock()
		gc.source = source
		gc.mu.Unlock()
	}
}

// gateMessages is the AfterNetConnect hook that puts a gatedConn over a
// new HTTP pool connection (after TLS, so that it reads messages), below
// any hook the configuration had.
func gateMessages(budget *membudget.Budget, next func(context.Context, *pgconn.Config, net.Conn) (net.Conn, error)) func(context.Context, *pgconn.Config, net.Conn) (net.Conn, error) {
	return func(ctx context.Context, cfg *pgconn.Config, c net.Conn) (net.Conn, error) {
		if next != nil {
			var err error
			if c, err = next(ctx, cfg, c); err != nil {
				return nil, err
			}
		}
		return &gatedConn{Conn: c, budget: budget}, nil
	}
}

// NetConn is the connection below, for a look into its socket
// (sockpeek): gatedConn keeps no bytes of its own.
func (c *gatedConn) NetConn() net.Conn { return c.Conn }

func (c *gatedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		if gerr := c.scan(p[:n]); gerr != nil {
			return 0, gerr
		}
	}
	return n, err
}

// scan follows the message headers in b, the next bytes of the stream.
func (c *gatedConn) scan(b []byte) error {
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
func (c *gatedConn) takeRoom(body int64) error {
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
func (c *gatedConn) giveRoomBack() {
	if c.granted.Load() == 0 {
		return
	}
	c.mu.Lock()
	c.budget.GiveFor(c.grantedTo, c.granted.Swap(0))
	c.mu.Unlock()
}

func (c *gatedConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.budget.GiveFor(c.grantedTo, c.granted.Swap(0))
	c.mu.Unlock()
	return c.Conn.Close()
}

// releaseMessageRoom gives back what a connection's large messages held,
// once its request has read them all; the connection serves no client
// until it is lent again.
func releaseMessageRoom(pc *pgconn.PgConn) {
	if gc, ok := pc.Conn().(*gatedConn); ok {
		gc.giveRoomBack()
		gc.mu.Lock()
		gc.source = ""
		gc.mu.Unlock()
	}
}

package backend

import (
	"context"
	"encoding/binary"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// cancelRequestCode is the CancelRequest's request code (pqcomm.h).
const cancelRequestCode = 80877102

// CancelRequestPacket is a CancelRequest for the backend process pid with
// its secret key.
func CancelRequestPacket(pid uint32, key []byte) []byte {
	msg := make([]byte, 12, 12+len(key))
	binary.BigEndian.PutUint32(msg[0:], uint32(12+len(key)))
	binary.BigEndian.PutUint32(msg[4:], cancelRequestCode)
	binary.BigEndian.PutUint32(msg[8:], pid)
	return append(msg, key...)
}

// SendCancel asks the server at network, addr to cancel what backend pid
// is running, on a connection of its own, and returns once the server has
// closed that connection: PostgreSQL answers nothing, and closes after it
// has signalled the backend. ctx bounds the whole exchange.
func SendCancel(ctx context.Context, network, addr string, pid uint32, key []byte) error {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	return DeliverCancel(c, pid, key)
}

// DeliverCancel writes a CancelRequest on c, a connection made for it (to
// a server, a peer or a draining process), and waits for the other end to
// close it, which it does once it has passed the cancel on. The caller
// bounds the wait with c's deadline.
func DeliverCancel(c net.Conn, pid uint32, key []byte) error {
	if _, err := c.Write(CancelRequestPacket(pid, key)); err != nil {
		return err
	}
	var one [1]byte
	c.Read(one[:])
	return nil
}

// cancelSettle is how long a connection whose statement was canceled
// waits before it is used again: the signal PostgreSQL sent its backend
// must land while that backend is idle, where it is ignored, not on the
// connection's next statement (pgx waits as long for the same reason).
const cancelSettle = 100 * time.Millisecond

// cancelOnDone ends an HTTP connection's statement when the request's
// context ends (http.statement_timeout passed, or the client left) the way
// a client of PostgreSQL's own ends one: it asks the backend to cancel and
// reads the answer. pgx's default only put a deadline on the socket, so the
// read failed at once and the connection was closed with the statement's
// outcome unread: a COMMIT, or an autocommit INSERT, that was waiting for
// a synchronous standby stayed committed (PostgreSQL does not undo a
// commit on a cancel: it warns and answers COMMIT) while the client was
// told its statement was canceled. Now the answer is the backend's: ERROR
// 57014 when the statement was canceled, its result when it had finished.
// The socket's deadline comes grace later, for a backend that answers
// nothing at all.
type cancelOnDone struct {
	pc            *pgconn.PgConn
	network, addr string
	grace         time.Duration
	sent          chan struct{}
}

// newCancelOnDone is the context watcher of pc, a connection to the server
// at host and port.
func newCancelOnDone(pc *pgconn.PgConn, host string, port int, grace time.Duration) ctxwatch.Handler {
	h := &cancelOnDone{pc: pc, grace: grace}
	if a, ok := pc.Conn().RemoteAddr().(*net.TCPAddr); ok {
		// The address the connection reached, not the name it was
		// given: a DNS name may lead elsewhere now.
		h.network, h.addr = "tcp", a.String()
	} else {
		h.network, h.addr = Address(host, port)
	}
	return h
}

// HandleCancel sends the cancel, outside the connections counted against
// max_backend_connections: a request at that limit must still be able to
// end its statement.
func (h *cancelOnDone) HandleCancel(context.Context) {
	deadline := time.Now().Add(h.grace)
	h.pc.Conn().SetDeadline(deadline)
	h.sent = make(chan struct{})
	go func() {
		defer close(h.sent)
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		if SendCancel(ctx, h.network, h.addr, h.pc.PID(), h.pc.SecretKey()) == nil {
			time.Sleep(cancelSettle)
		}
	}()
}

// HandleUnwatchAfterCancel waits for the cancel to have been delivered,
// also when the statement's answer came first, so that it cannot land on
// whatever the connection runs next.
func (h *cancelOnDone) HandleUnwatchAfterCancel() {
	<-h.sent
	h.pc.Conn().SetDeadline(time.Time{})
}

package pgwire

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgproto3"
)

// maxAuthMessageLen bounds every typed message read before a client is
// authenticated: a password, a token carried as a password or a SASL
// message fits; a claimed gigabyte is refused before anything is allocated.
const maxAuthMessageLen = 16 * 1024

// clientConn is the client's side of a session: its socket, a buffered
// reader that is kept for the relay (so bytes a client pipelined after its
// password are never lost), and an output buffer.
type clientConn struct {
	net.Conn
	r    *bufio.Reader
	wbuf []byte
	// kept is how much of wbuf a failure must still send: the
	// AuthenticationOk that waits to go out with the session's first
	// messages (see conn.serve).
	kept int
}

func newClientConn(c net.Conn) *clientConn {
	return &clientConn{Conn: c, r: bufio.NewReaderSize(c, 4096)}
}

// keep marks everything queued so far as owed to the client: a failure
// that follows sends it before its ErrorResponse, where it would otherwise
// drop what was queued.
func (c *clientConn) keep() { c.kept = len(c.wbuf) }

// send queues a message; flush writes the queue.
func (c *clientConn) send(m pgproto3.BackendMessage) {
	var err error
	c.wbuf, err = m.Encode(c.wbuf)
	if err != nil {
		// Encode fails only for a message over 1 GB, which pgwarden never builds.
		panic(err)
	}
}

func (c *clientConn) flush() error {
	if len(c.wbuf) == 0 {
		return nil
	}
	_, err := c.Write(c.wbuf)
	c.wbuf, c.kept = c.wbuf[:0], 0
	return err
}

// ask writes the queue to a client that cannot send its answer before it
// has the queue (SASLContinue: the answer proves the nonce it brings), and
// waits for the answer without first reading into an empty socket (see
// writeAwaitingAnswer). Bytes already read are taken at once. Never for a
// message a client may answer in advance: bytes it sent before the write
// would not end the wait, which then lasted until the deadline.
func (c *clientConn) ask() error {
	if len(c.wbuf) == 0 {
		return nil
	}
	var err error
	if c.r.Buffered() > 0 {
		_, err = c.Write(c.wbuf)
	} else {
		err = writeAwaitingAnswer(c.Conn, c.wbuf)
	}
	c.wbuf, c.kept = c.wbuf[:0], 0
	return err
}

// readMessage reads one typed message whose body is at most maxBody bytes.
func (c *clientConn) readMessage(maxBody int) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 {
		return 0, nil, ProtocolViolation("invalid message length")
	}
	if n-4 > int64(maxBody) {
		return 0, nil, ProtocolViolation("message of type %q too long before authentication", hdr[0])
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(c.r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], body, nil
}

// readPassword reads a PasswordMessage ('p'), the only message a client
// may send while a cleartext password is asked for.
func (c *clientConn) readPassword() (string, error) {
	typ, body, err := c.readMessage(maxAuthMessageLen)
	if err != nil {
		return "", err
	}
	if typ != 'p' {
		return "", ProtocolViolation("expected password response, got message type %q", typ)
	}
	if len(body) == 0 || body[len(body)-1] != 0 {
		return "", ProtocolViolation("invalid password packet: missing terminator")
	}
	pw := body[:len(body)-1]
	for _, b := range pw {
		if b == 0 {
			return "", ProtocolViolation("invalid password packet: embedded NUL")
		}
	}
	return string(pw), nil
}

// readSASLInitial reads a SASLInitialResponse: the mechanism name and the
// client-first-message. A length of -1 (no initial response) is refused:
// every SCRAM client sends one, and accepting none only adds a round trip
// for an attacker to play with.
func (c *clientConn) readSASLInitial() (string, []byte, error) {
	typ, body, err := c.readMessage(maxAuthMessageLen)
	if err != nil {
		return "", nil, err
	}
	if typ != 'p' {
		return "", nil, ProtocolViolation("expected SASL response, got message type %q", typ)
	}
	mech, rest, ok := cutNul(body)
	if !ok || len(rest) < 4 {
		return "", nil, ProtocolViolation("malformed SASLInitialResponse message")
	}
	n := int32(binary.BigEndian.Uint32(rest))
	rest = rest[4:]
	if n < 0 || int(n) != len(rest) {
		return "", nil, ProtocolViolation("malformed SASLInitialResponse message")
	}
	return mech, rest, nil
}

// parseParameterStatus reads the body of a ParameterStatus message.
func parseParameterStatus(body []byte) (name, value string, ok bool) {
	name, rest, ok := cutNul(body)
	if !ok {
		return "", "", false
	}
	value, _, ok = cutNul(rest)
	return name, value, ok
}

package pgwire

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"

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

// maxTLSRecord is the most plaintext pgwarden puts in one TLS record to a
// client: 8 KiB, as PostgreSQL's own 8 KiB send buffer does. libpq (15's,
// and the libpq most systems ship; pgsql-hackers has discussed a fix since
// 2024) reads a record into at least 8 KiB of free buffer, and a larger
// record it reads in part: the rest stays decrypted inside OpenSSL, where
// a poll on the socket cannot see it. A client of libpq's asynchronous API
// (pgbench, pg_basebackup's and pg_recvlogical's stream receivers,
// psycopg 3, ruby-pg) then waits for the socket with its answer already
// here, for good when the server has nothing more to say. Go's TLS writes
// records of up to 16 KiB; a 32 KiB result could hang such a client
// through pgwarden where it never hangs directly.
const maxTLSRecord = 8 << 10

// Write writes p to the client; over TLS in records of at most
// maxTLSRecord bytes (see there).
func (c *clientConn) Write(p []byte) (int, error) {
	tc, ok := c.Conn.(*tls.Conn)
	if !ok || len(p) <= maxTLSRecord {
		return c.Conn.Write(p)
	}
	return writeTLSRecords(tc, p)
}

// writeTLSRecords writes p to tc in records of at most maxTLSRecord bytes,
// one Write per record, since crypto/tls fills records to 16 KiB. Under a
// client's TLS (tlsSocket) the records go out together: capping them costs
// no system calls.
func writeTLSRecords(tc *tls.Conn, p []byte) (int, error) {
	sock, _ := tc.NetConn().(*tlsSocket)
	if sock != nil {
		sock.gather()
	}
	written := 0
	var err error
	for len(p) > 0 && err == nil {
		chunk := p[:min(len(p), maxTLSRecord)]
		var n int
		n, err = tc.Write(chunk)
		written += n
		p = p[len(chunk):]
	}
	if sock != nil {
		if ferr := sock.send(); ferr != nil && err == nil {
			return 0, ferr
		}
	}
	return written, err
}

// tlsSocket is the socket under a client's TLS connection. While gathering
// (writeTLSRecords) it keeps the records written to it, in a pooled
// buffer, and sends them in one write.
//
// Its lock is never held across a socket write: tls.Conn.Close sends its
// close_notify through here, and a client that stops reading must not hold
// that up. (crypto/tls closes the socket at once only while one of its own
// Writes is under way; a send of gathered records is not one.) Order is
// kept instead by sending nothing past records that wait: while some are
// gathered or being sent, every write is gathered behind them.
type tlsSocket struct {
	net.Conn
	mu        sync.Mutex
	gathering bool
	sending   bool    // a send is under way: it sends what is gathered meanwhile too
	gathered  *[]byte // records not yet sent, from gatherBufPool
	err       error   // a failed send: the stream is broken for good
}

// gatherLimit is how much a gathering socket holds before it sends: a
// relay's largest read (32 KiB) goes out in one write.
const gatherLimit = 32 << 10

var gatherBufPool = sync.Pool{New: func() any { b := make([]byte, 0, gatherLimit+maxTLSRecord+64); return &b }}

func (s *tlsSocket) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return 0, err
	}
	if !s.gathering && !s.sending && s.gathered == nil {
		s.mu.Unlock()
		// Nothing waits to be sent (a send that just stopped gathering
		// has yet to take what it gathered: that still waits), and
		// crypto/tls writes one record at a time, under its own lock.
		return s.Conn.Write(p)
	}
	if s.gathered == nil {
		s.gathered = gatherBufPool.Get().(*[]byte)
	}
	*s.gathered = append(*s.gathered, p...)
	full := len(*s.gathered) >= gatherLimit
	s.mu.Unlock()
	if full {
		if err := s.sendGathered(false); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// gather starts keeping what is written; send sends it and stops.
func (s *tlsSocket) gather() {
	s.mu.Lock()
	s.gathering = true
	s.mu.Unlock()
}

func (s *tlsSocket) send() error { return s.sendGathered(true) }

// sendGathered sends what is gathered, and what is gathered while it
// sends, unless a send is already under way (which then sends it).
// stopGathering ends the gathering in the same step, so that no write
// finds it ended with records still waiting.
func (s *tlsSocket) sendGathered(stopGathering bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if stopGathering {
		s.gathering = false
	}
	if s.sending {
		return s.err
	}
	for s.err == nil && s.gathered != nil && len(*s.gathered) > 0 {
		b := s.gathered
		s.gathered = nil
		s.sending = true
		s.mu.Unlock()
		_, err := s.Conn.Write(*b)
		*b = (*b)[:0]
		if cap(*b) <= 2*gatherLimit {
			gatherBufPool.Put(b)
		}
		s.mu.Lock()
		s.sending = false
		if err != nil {
			// Part of a record may have gone out: nothing after it can
			// be read by the client.
			s.err = err
		}
	}
	return s.err
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

package integration

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// rawClient speaks the wire protocol by hand, for what drivers never send.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	network := "tcp"
	if addr != "" && addr[0] == '/' {
		network = "unix"
	}
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawClient{t: t, conn: c, fe: pgproto3.NewFrontend(c, c)}
}

func (r *rawClient) write(b []byte) {
	r.t.Helper()
	if _, err := r.conn.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// startupBytes encodes a StartupMessage of protocol major.minor.
func startupBytes(major, minor uint16, params ...string) []byte {
	body := binary.BigEndian.AppendUint32(nil, uint32(major)<<16|uint32(minor))
	for _, p := range params {
		body = append(append(body, p...), 0)
	}
	body = append(body, 0)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
}

// cancelBytes encodes a CancelRequest for the backend pid and its key.
func cancelBytes(pid uint32, key []byte) []byte {
	msg := binary.BigEndian.AppendUint32(nil, uint32(12+len(key)))
	msg = binary.BigEndian.AppendUint32(msg, 80877102)
	msg = binary.BigEndian.AppendUint32(msg, pid)
	return append(msg, key...)
}

func requestBytes(code uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, 8)
	return binary.BigEndian.AppendUint32(b, code)
}

func (r *rawClient) send(m pgproto3.FrontendMessage) {
	r.t.Helper()
	r.fe.Send(m)
	if err := r.fe.Flush(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawClient) receive() pgproto3.BackendMessage {
	r.t.Helper()
	m, err := r.fe.Receive()
	if err != nil {
		r.t.Fatalf("receive: %v", err)
	}
	return m
}

// expectError reads until an ErrorResponse and checks it.
func (r *rawClient) expectError(code, message string) {
	r.t.Helper()
	for {
		m := r.receive()
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			if e.Code != code || (message != "" && e.Message != message) {
				r.t.Fatalf("want %s %q, got %s %q", code, message, e.Code, e.Message)
			}
			if e.Severity != "FATAL" {
				r.t.Fatalf("want severity FATAL, got %q", e.Severity)
			}
			return
		}
	}
}

// expectClosed asserts the server closes the connection without more data.
func (r *rawClient) expectClosed() {
	r.t.Helper()
	var b [1]byte
	n, err := r.conn.Read(b[:])
	if n != 0 || !(errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)) {
		r.t.Fatalf("want the connection closed, got %d bytes, %v", n, err)
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// startTLS asks for TLS (SSLRequest) and goes on over it, trusting any
// certificate. It returns a function that makes later TLS records wait
// until the next call, to reach the server in one TCP write.
func (r *rawClient) startTLS() (holdRecords func(hold bool)) {
	r.t.Helper()
	return r.startTLSWith(&tls.Config{InsecureSkipVerify: true})
}

// startTLSWith is startTLS with the client's own TLS configuration.
func (r *rawClient) startTLSWith(cfg *tls.Config) (holdRecords func(hold bool)) {
	r.t.Helper()
	r.write([]byte{0, 0, 0, 8, 4, 210, 22, 47})
	if b := r.readByte(); b != 'S' {
		r.t.Fatalf("SSLRequest answered %q", b)
	}
	hc := &holdingConn{Conn: r.conn}
	tc := tls.Client(hc, cfg)
	if err := tc.Handshake(); err != nil {
		r.t.Fatal(err)
	}
	r.conn = tc
	r.fe = pgproto3.NewFrontend(tc, tc)
	return func(hold bool) {
		if err := hc.setHold(hold); err != nil {
			r.t.Fatal(err)
		}
	}
}

// holdingConn keeps what is written while holding, and writes it all at
// once when it stops.
type holdingConn struct {
	net.Conn
	mu      sync.Mutex
	holding bool
	held    []byte
}

func (c *holdingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *holdingConn) setHold(hold bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = hold
	if hold || len(c.held) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.held)
	c.held = nil
	return err
}

// readByte reads one byte (the answer to SSLRequest or GSSENCRequest).
func (r *rawClient) readByte() byte {
	r.t.Helper()
	var b [1]byte
	if _, err := io.ReadFull(r.conn, b[:]); err != nil {
		r.t.Fatal(err)
	}
	return b[0]
}

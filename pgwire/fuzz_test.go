package pgwire

import (
	"bytes"
	"net"
	"testing"
)

// bufConn is a net.Conn that reads from a buffer, for parsers that take a
// connection.
type bufConn struct {
	net.Conn
	r *bytes.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// FuzzTypedMessageBeforeAuth: a typed message read before authentication,
// as a password or SASL response, is refused or bounded, never a panic or a
// large allocation.
func FuzzTypedMessageBeforeAuth(f *testing.F) {
	f.Add([]byte("p\x00\x00\x00\x09secret\x00"))
	f.Add([]byte("p\x00\x00\x00\x1aSCRAM-SHA-256\x00\x00\x00\x00\x05n,,n="))
	f.Add([]byte("p\x00\x00\x00\x16SCRAM-SHA-256\x00\xff\xff\xff\xff"))
	f.Add([]byte("p\x7f\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := newClientConn(&bufConn{r: bytes.NewReader(b)})
		if pw, err := c.readPassword(); err == nil && len(pw) > maxAuthMessageLen {
			t.Fatal("oversized password accepted")
		}
		c = newClientConn(&bufConn{r: bytes.NewReader(b)})
		if _, data, err := c.readSASLInitial(); err == nil && len(data) > maxAuthMessageLen {
			t.Fatal("oversized SASL message accepted")
		}
	})
}

// FuzzPROXYHeader: the byte-exact PROXY header reader never reads past a
// header, and never panics.
func FuzzPROXYHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 10.1.2.3 127.0.0.1 5000 6432\r\n\x00\x00\x00\x08"))
	f.Add(append([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"), make([]byte, 12)...))
	f.Add([]byte("\x00\x00\x00\x08\x04\xd2\x16\x2f"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		h, pre, err := readProxyHeader(&bufConn{r: r})
		if err == nil && h == nil && len(pre) != 5 {
			t.Fatalf("no header but %d bytes to replay", len(pre))
		}
	})
}

package pgwire

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"time"

	"github.com/pgwarden/pgwarden/certs"
	"github.com/pgwarden/pgwarden/snapshot"
)

// tlsRecordHandshake is the first byte of a TLS ClientHello record: a
// client using PostgreSQL 17's sslnegotiation=direct starts with it instead
// of an SSLRequest.
const tlsRecordHandshake = 0x16

// startTLS answers an SSLRequest: 'N' without [tls]; with it, 'S' and the
// handshake. Bytes that arrived after the SSLRequest and before the
// handshake are refused without being read as protocol (CVE-2021-23214).
func (c *conn) startTLS(snap *snapshot.Snapshot) error {
	if snap.TLS == nil || c.local {
		// PostgreSQL never offers TLS on the unix socket either.
		_, err := c.stream.Write([]byte{'N'})
		return err
	}
	if peekSocket(c.raw) == socketPending {
		return UnencryptedAfterSSL()
	}
	if _, err := c.stream.Write([]byte{'S'}); err != nil {
		return err
	}
	return c.handshake(snap, c.raw, false)
}

// handshake runs TLS on conn and makes it the connection's stream. The
// certificate comes from the snapshot current at the ClientHello, so a reload
// with rotated files serves new handshakes at once; the material actually
// used is kept for this connection's channel binding and client-certificate
// checks.
func (c *conn) handshake(snap *snapshot.Snapshot, conn net.Conn, direct bool) error {
	c.tlsMat = snap.TLS
	tc := tls.Server(&tlsSocket{Conn: conn}, &tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			if cur := c.srv.state.Current().TLS; cur != nil {
				c.tlsMat = cur
			}
			return c.tlsMat.PGConfig(), nil
		},
	})
	ctx, cancel := context.WithCancel(c.ctx())
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		var rhe tls.RecordHeaderError
		if !direct && errors.As(err, &rhe) {
			// Plain text after our 'S': say so, in plain text.
			return UnencryptedAfterSSL()
		}
		c.srv.log.Debug("TLS handshake failed: " + err.Error())
		return errSilentClose
	}
	st := tc.ConnectionState()
	if direct && st.NegotiatedProtocol != certs.ALPNPostgres {
		// Direct TLS must say it speaks PostgreSQL, so that a TLS
		// connection meant for another service is never taken for ours.
		c.srv.log.Debug("direct TLS without ALPN postgresql: closed")
		return errSilentClose
	}
	c.ssl = true
	c.tls = &st
	c.stream = tc
	c.cc = newClientConn(tc)
	return nil
}

// clientCert verifies the certificate the client presented, if any.
func (c *conn) clientCert() (*x509.Certificate, error) {
	if c.tls == nil {
		return nil, certs.ErrNoClientCert
	}
	now := time.Now()
	leaf, err := c.tlsMat.VerifyClient(c.tls.PeerCertificates, now)
	if err == nil {
		c.mu.Lock()
		c.certAt = now
		c.mu.Unlock()
	}
	return leaf, err
}

// prefixConn replays bytes already read from a connection before reading
// more from it.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }

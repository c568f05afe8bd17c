package pgwire

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/authcore"
)

// wireProver asks a wire client for the proof authcore.Gate wants, over the
// protocol: the Postgres wire's face of the one login gate.
type wireProver struct{ c *conn }

var (
	_ authcore.Prover        = wireProver{}
	_ authcore.SASLExchange  = wireProver{}
	_ authcore.ClientWatcher = wireProver{}
)

// Offered: a wire client has sent nothing yet; it answers what it is asked.
func (p wireProver) Offered() authcore.Offer { return authcore.OfferInteractive }

// Password asks with AuthenticationCleartextPassword.
func (p wireProver) Password(context.Context) (string, error) {
	p.c.cc.send(&pgproto3.AuthenticationCleartextPassword{})
	if err := p.c.cc.flush(); err != nil {
		return "", left(err)
	}
	pw, err := p.c.cc.readPassword()
	return pw, left(err)
}

// left marks err as the client's leaving when its connection closed: the
// audit log and metrics then count an abandoned attempt (a health check
// such as pg_isready), not a failed one. The error still is what it was.
func left(err error) error {
	if err != nil && clientClosed(err) {
		return fmt.Errorf("%w: %w", authcore.ErrClientLeft, err)
	}
	return err
}

// Token is carried as the cleartext password, for drivers that can send
// nothing else.
func (p wireProver) Token(ctx context.Context) (string, error) { return p.Password(ctx) }

// SASL is the wire's SASL exchange.
func (p wireProver) SASL() authcore.SASLExchange { return p }

// ChannelBinding is the tls-server-end-point data of the certificate this
// connection's handshake used; nil without TLS (no -PLUS then).
func (p wireProver) ChannelBinding() []byte {
	if p.c.tls != nil && len(p.c.tlsMat.EndpointHash) > 0 {
		return p.c.tlsMat.EndpointHash
	}
	return nil
}

// Offer sends AuthenticationSASL and reads the SASLInitialResponse.
func (p wireProver) Offer(mechs []string) (string, []byte, error) {
	p.c.cc.send(&pgproto3.AuthenticationSASL{AuthMechanisms: mechs})
	if err := p.c.cc.flush(); err != nil {
		return "", nil, left(err)
	}
	mech, data, err := p.c.cc.readSASLInitial()
	return mech, data, left(err)
}

// Continue sends AuthenticationSASLContinue and reads the SASLResponse.
// No client can have sent that response before it has this message (it
// proves the nonce this message brings), so the read waits for it to come
// rather than first finding the socket empty (see clientConn.ask). A
// password or SASLInitialResponse may have been sent early: those are read
// after a plain flush.
func (p wireProver) Continue(out []byte) ([]byte, error) {
	p.c.cc.send(&pgproto3.AuthenticationSASLContinue{Data: out})
	if err := p.c.cc.ask(); err != nil {
		return nil, left(err)
	}
	typ, body, err := p.c.cc.readMessage(maxAuthMessageLen)
	if err != nil {
		return nil, left(err)
	}
	if typ != 'p' {
		return nil, ProtocolViolation("expected SASL response, got message type %q", typ)
	}
	return body, nil
}

// Final queues AuthenticationSASLFinal; AuthenticationOk follows it in the
// same write.
func (p wireProver) Final(out []byte) error {
	p.c.cc.send(&pgproto3.AuthenticationSASLFinal{Data: out})
	return nil
}

// Certificate is the TLS client certificate, verified against
// client_ca_file.
func (p wireProver) Certificate() (*x509.Certificate, error) { return p.c.clientCert() }

// PeerUser is the OS user at the other end of the unix socket.
func (p wireProver) PeerUser() (string, error) { return peerUser(p.c.raw) }

// WatchClient ends the returned context when the client leaves while the
// gate waits for the throttle: it has been asked for nothing yet, so a close
// or anything it sends is its leaving. done stops the watch and sets the
// authentication deadline again, so that a long backoff does not count
// against auth_timeout (or a guesser could lock the real user out).
func (p wireProver) WatchClient(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if st := peekSocket(p.c.raw); st == socketClosed || st == socketPending {
					cancel()
					return
				}
			}
		}
	}()
	return ctx, func() {
		close(stop)
		<-watched
		cancel()
		p.c.raw.SetDeadline(time.Now().Add(p.c.srv.state.Current().Config.Server.AuthTimeout.Duration))
	}
}

package backend

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
)

// Authentication request codes of the backend's 'R' messages.
const (
	authOK           = 0
	authSASL         = 10
	authSASLContinue = 11
	authSASLFinal    = 12
)

// maxLoginMessage bounds one message the backend sends before
// AuthenticationOk (an ErrorResponse is the largest).
const maxLoginMessage = 1 << 20

// scramPassthroughConn logs in to the backend with a proven client's SCRAM
// keys instead of a password, which pgconn cannot do: it sits under pgconn
// (AfterNetConnect), runs the backend's SCRAM exchange itself when the
// backend asks for one, and hands pgconn the messages around it, so pgconn
// sees a backend that trusted it. After AuthenticationOk, or an error, it
// is a plain pass-through, and Unwrap hands the session the socket itself.
type scramPassthroughConn struct {
	net.Conn
	keys *authcore.SCRAMKeys
	role string
	// requireAuth and channelBinding are [backend]'s: pgconn, which sees
	// a backend that trusted it, cannot apply them to this login.
	requireAuth    config.RequireAuth
	channelBinding string
	pending        []byte // messages for pgconn
	through        bool   // the login phase is over
	exchanged      bool   // the SCRAM exchange completed
}

// Unwrap returns the socket under a connection Config wrapped for a SCRAM
// pass-through login; any other connection is returned as it is. The
// event loop and the TLS relay need the socket itself.
func Unwrap(c net.Conn) net.Conn {
	if w, ok := c.(*scramPassthroughConn); ok && w.through && len(w.pending) == 0 {
		return w.Conn
	}
	return c
}

func (c *scramPassthroughConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		if c.through {
			return c.Conn.Read(p)
		}
		if err := c.step(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// step reads one message of the login phase and decides what pgconn sees.
func (c *scramPassthroughConn) step() error {
	typ, body, err := c.readMessage()
	if err != nil {
		return err
	}
	switch {
	case typ == 'R' && len(body) >= 4 && binary.BigEndian.Uint32(body) == authSASL:
		if err := c.requireAuth.Check("scram-sha-256"); err != nil {
			return fmt.Errorf("require_auth check failed: %w", err)
		}
		return c.exchange(body[4:])
	case typ == 'R' && len(body) >= 4 && binary.BigEndian.Uint32(body) == authOK && !c.exchanged:
		if err := c.requireAuth.Check("none"); err != nil {
			return fmt.Errorf("require_auth check failed: %w", err)
		}
		if c.channelBinding == "require" {
			// A server that asks nothing proves nothing of itself.
			return errors.New("channel binding check failed: [backend] channel_binding = \"require\", and the backend let pgwarden in without authenticating")
		}
	case typ == 'R' && len(body) >= 4 && binary.BigEndian.Uint32(body) != authOK:
		// A password or MD5 request: there is no password to send.
		c.refuse("28000", fmt.Sprintf("the backend asks role %q for a password (authentication request %d); with [backend] passthrough, pgwarden holds only the client's SCRAM proof", c.role, binary.BigEndian.Uint32(body)),
			"Make the backend use scram-sha-256 for this role, or set the user's backend_password.")
		return nil
	case typ == 'v':
		// NegotiateProtocolVersion comes before authentication.
		c.queue(typ, body)
		return nil
	}
	// AuthenticationOk (trust), an ErrorResponse, anything else: pgconn
	// takes it from here.
	c.queue(typ, body)
	c.through = true
	return nil
}

// exchange runs SCRAM-SHA-256 with the client's ClientKey, bound to the
// TLS channel (SCRAM-SHA-256-PLUS, tls-server-end-point) as pgconn binds a
// password login: whenever the backend offers it over TLS, unless
// channel_binding is "disable"; "require" refuses a login it cannot bind.
// The keys prove the same either way: the binding only enters the
// message they sign. mechs is the AuthenticationSASL body: mechanism
// names, each NUL-terminated.
func (c *scramPassthroughConn) exchange(mechs []byte) error {
	offered, offeredPlus := false, false
	for _, m := range bytes.Split(mechs, []byte{0}) {
		offered = offered || string(m) == authcore.MechSCRAM
		offeredPlus = offeredPlus || string(m) == authcore.MechSCRAMPlus
	}
	if !offered {
		c.refuse("28000", fmt.Sprintf("the backend does not offer %s to role %q, and pgwarden holds only the client's SCRAM proof", authcore.MechSCRAM, c.role), "")
		return nil
	}
	// The GS2 header: "p=tls-server-end-point" binding; "y" over TLS
	// when the backend offers no PLUS (PostgreSQL refuses "y" where it
	// does offer it: a downgrade); else "n" (no TLS, binding disabled, or
	// a certificate whose hash RFC 5929 does not define).
	mech, gs2 := authcore.MechSCRAM, "n,,"
	var cbData []byte
	if tc, ok := c.Conn.(*tls.Conn); ok && c.channelBinding != "disable" {
		if !offeredPlus {
			gs2 = "y,,"
		} else {
			state := tc.ConnectionState()
			if cb, err := scram.NewTLSServerEndpointBinding(&state); err == nil {
				mech, gs2, cbData = authcore.MechSCRAMPlus, "p=tls-server-end-point,,", cb.Data
			}
		}
	}
	if c.channelBinding == "require" && cbData == nil {
		// The keys would prove the client to a server that proved
		// nothing of itself: refused before any is sent.
		return errors.New("channel binding check failed: [backend] channel_binding = \"require\", and the backend offers no SCRAM-SHA-256-PLUS over TLS")
	}
	nonce := make([]byte, 18)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	clientNonce := base64.StdEncoding.EncodeToString(nonce)
	// The name inside SCRAM is ignored by PostgreSQL; libpq sends none.
	firstBare := "n=,r=" + clientNonce
	if err := c.send(&pgproto3.SASLInitialResponse{AuthMechanism: mech, Data: []byte(gs2 + firstBare)}); err != nil {
		return err
	}
	serverFirst, ok, err := c.expect(authSASLContinue)
	if !ok || err != nil {
		return err
	}
	attrs := scramAttributes(serverFirst)
	salt, _ := base64.StdEncoding.DecodeString(attrs["s"])
	iters, _ := strconv.Atoi(attrs["i"])
	if !strings.HasPrefix(attrs["r"], clientNonce) || len(attrs["r"]) == len(clientNonce) {
		return errors.New("backend SCRAM: the server nonce does not extend the client's")
	}
	if !bytes.Equal(salt, c.keys.Salt) || iters != c.keys.Iterations {
		// The backend holds another verifier (the password changed
		// there, or the role's is not the one pgwarden checked): the
		// keys cannot log in, and a wrong proof is no use to send.
		c.refuse("28P01", fmt.Sprintf("the backend's SCRAM verifier for role %q is not the one pgwarden checked the client against", c.role), "")
		return nil
	}
	finalBare := "c=" + base64.StdEncoding.EncodeToString(append([]byte(gs2), cbData...)) + ",r=" + attrs["r"]
	authMessage := firstBare + "," + serverFirst + "," + finalBare
	proof := c.keys.Proof(authMessage)
	if err := c.send(&pgproto3.SASLResponse{Data: []byte(finalBare + ",p=" + base64.StdEncoding.EncodeToString(proof))}); err != nil {
		return err
	}
	serverFinal, ok, err := c.expect(authSASLFinal)
	if !ok || err != nil {
		return err
	}
	sig, err := base64.StdEncoding.DecodeString(scramAttributes(serverFinal)["v"])
	if err != nil || !hmac.Equal(sig, c.keys.ServerSignature(authMessage)) {
		return errors.New("backend SCRAM: the server's signature is wrong: it does not hold the role's verifier")
	}
	c.exchanged = true
	return nil // AuthenticationOk follows, read by the next step
}

// expect reads the next message: the SASL step wanted (ok), or an error
// the backend sent, queued for pgconn (not ok).
func (c *scramPassthroughConn) expect(code uint32) (data string, ok bool, err error) {
	typ, body, err := c.readMessage()
	if err != nil {
		return "", false, err
	}
	if typ == 'R' && len(body) >= 4 && binary.BigEndian.Uint32(body) == code {
		return string(body[4:]), true, nil
	}
	if typ == 'E' {
		c.queue(typ, body)
		c.through = true
		return "", false, nil
	}
	return "", false, fmt.Errorf("backend SCRAM: unexpected message %q during the exchange", typ)
}

func (c *scramPassthroughConn) readMessage() (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(c.Conn, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n < 4 || n-4 > maxLoginMessage {
		return 0, nil, fmt.Errorf("backend sent a message of invalid length %d while logging in", n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(c.Conn, body); err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}

func (c *scramPassthroughConn) queue(typ byte, body []byte) {
	c.pending = append(c.pending, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(c.pending[len(c.pending)-4:], uint32(len(body)+4))
	c.pending = append(c.pending, body...)
}

// refuse ends the login with an error of pgwarden's own, which pgconn
// reports as the backend's (and LoginRefusal words for the client).
func (c *scramPassthroughConn) refuse(code, msg, hint string) {
	e := &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg, Hint: hint}
	b, _ := e.Encode(nil)
	c.pending = append(c.pending, b...)
	c.through = true
}

func (c *scramPassthroughConn) send(m pgproto3.FrontendMessage) error {
	b, err := m.Encode(nil)
	if err != nil {
		return err
	}
	_, err = c.Conn.Write(b)
	return err
}

// scramAttributes reads a SCRAM message's comma-separated k=v attributes.
func scramAttributes(msg string) map[string]string {
	out := make(map[string]string)
	for _, kv := range strings.Split(msg, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && len(k) == 1 {
			if _, seen := out[k]; !seen {
				out[k] = v
			}
		}
	}
	return out
}

// scramPassthrough is the AfterNetConnect hook of a login with keys,
// under [backend]'s require_auth and channel_binding.
func scramPassthrough(keys *authcore.SCRAMKeys, role string, requireAuth config.RequireAuth, channelBinding string) func(context.Context, *pgconn.Config, net.Conn) (net.Conn, error) {
	return func(_ context.Context, _ *pgconn.Config, conn net.Conn) (net.Conn, error) {
		return &scramPassthroughConn{Conn: conn, keys: keys, role: role, requireAuth: requireAuth, channelBinding: channelBinding}, nil
	}
}

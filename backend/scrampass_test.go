package backend

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/pbkdf2"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
)

// keysFor are the keys a SCRAM login with password against v leaves.
func keysFor(t *testing.T, v *authcore.SCRAMVerifier, password string) *authcore.SCRAMKeys {
	salted, err := pbkdf2.Key(sha256.New, password, v.Salt, v.Iterations, sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, salted)
	m.Write([]byte("Client Key"))
	return &authcore.SCRAMKeys{Salt: v.Salt, Iterations: v.Iterations, ClientKey: m.Sum(nil), ServerKey: v.ServerKey}
}

func verifier(t *testing.T, password string) *authcore.SCRAMVerifier {
	h, err := authcore.HashPassword(authcore.AlgoSCRAM, password)
	if err != nil {
		t.Fatal(err)
	}
	v, err := authcore.ParseSCRAM(h)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func writeMsg(t *testing.T, w io.Writer, m pgproto3.BackendMessage) {
	b, err := m.Encode(nil)
	if err != nil {
		t.Error(err)
		return
	}
	w.Write(b)
}

// readFrontend reads one 'p' message body from the wrapper's side.
func readFrontend(r io.Reader) ([]byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
	_, err := io.ReadFull(r, body)
	return body, err
}

// fakeBackend is PostgreSQL's side of a SCRAM login, by xdg-go/scram (not
// pgwarden's code), holding v. badSignature makes it sign with another
// key, as an impostor without the verifier would.
func fakeBackend(t *testing.T, conn net.Conn, v *authcore.SCRAMVerifier, badSignature bool) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	creds := scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(v.Salt), Iters: v.Iterations}, StoredKey: v.StoredKey, ServerKey: v.ServerKey}
	if badSignature {
		creds.ServerKey = bytes.Repeat([]byte{1}, 32)
	}
	srv, _ := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	conv := srv.NewConversation()
	writeMsg(t, conn, &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}})
	body, err := readFrontend(conn)
	if err != nil {
		return
	}
	var first pgproto3.SASLInitialResponse
	if err := first.Decode(body); err != nil || first.AuthMechanism != "SCRAM-SHA-256" {
		t.Errorf("initial response %q: %v", body, err)
		return
	}
	out, err := conv.Step(string(first.Data))
	if err != nil {
		t.Errorf("client-first %q: %v", first.Data, err)
		return
	}
	writeMsg(t, conn, &pgproto3.AuthenticationSASLContinue{Data: []byte(out)})
	body, err = readFrontend(conn)
	if err != nil {
		return
	}
	out, err = conv.Step(string(body))
	if err != nil {
		writeMsg(t, conn, &pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: "password authentication failed for user \"r\""})
		return
	}
	writeMsg(t, conn, &pgproto3.AuthenticationSASLFinal{Data: []byte(out)})
	writeMsg(t, conn, &pgproto3.AuthenticationOk{})
	writeMsg(t, conn, &pgproto3.ReadyForQuery{TxStatus: 'I'})
}

// receive reads what pgconn would see through the wrapper.
func receive(t *testing.T, c net.Conn) (pgproto3.BackendMessage, error) {
	f := pgproto3.NewFrontend(c, io.Discard)
	return f.Receive()
}

// The wrapper logs in to a backend holding the same verifier with the
// keys alone, checks the backend's signature, and then gets out of the way.
func TestSCRAMPassthroughLogsInWithKeysAndChecksTheServer(t *testing.T) {
	v := verifier(t, "role-Pass-1")
	client, server := net.Pipe()
	go fakeBackend(t, server, v, false)
	w := &scramPassthroughConn{Conn: client, keys: keysFor(t, v, "role-Pass-1"), role: "r"}
	if m, err := receive(t, w); err != nil {
		t.Fatal(err)
	} else if _, ok := m.(*pgproto3.AuthenticationOk); !ok {
		t.Fatalf("pgconn sees %T, want AuthenticationOk", m)
	}
	if Unwrap(w) != client {
		t.Fatal("the socket was not handed back after the login")
	}
	if m, err := receive(t, Unwrap(w)); err != nil {
		t.Fatal(err)
	} else if _, ok := m.(*pgproto3.ReadyForQuery); !ok {
		t.Fatalf("after the login: %T", m)
	}

	// Keys of another password: the backend refuses, pgconn hears it.
	client, server = net.Pipe()
	go fakeBackend(t, server, v, false)
	w = &scramPassthroughConn{Conn: client, keys: keysFor(t, v, "other-Pass-1"), role: "r"}
	if m, _ := receive(t, w); m == nil || m.(*pgproto3.ErrorResponse).Code != "28P01" {
		t.Fatalf("wrong keys: %#v", m)
	}

	// A server that does not hold the verifier cannot pass for one.
	client, server = net.Pipe()
	go fakeBackend(t, server, v, true)
	w = &scramPassthroughConn{Conn: client, keys: keysFor(t, v, "role-Pass-1"), role: "r"}
	if _, err := receive(t, w); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("an impostor's signature: %v", err)
	}
	client.Close()
}

// Keys for another salt are never sent as a proof, and a backend that asks
// for a cleartext password gets nothing: pgconn hears why from pgwarden.
func TestSCRAMPassthroughSendsNothingThatCannotWork(t *testing.T) {
	v := verifier(t, "role-Pass-1")
	other := verifier(t, "role-Pass-1") // the same password, another salt
	for _, c := range []struct {
		name, code, message string
		backend             func(net.Conn)
	}{
		{"another verifier", "28P01", `the backend's SCRAM verifier for role "r" is not the one pgwarden checked`, func(server net.Conn) {
			writeMsg(t, server, &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}})
			body, _ := readFrontend(server)
			var first pgproto3.SASLInitialResponse
			first.Decode(body)
			_, nonce, _ := strings.Cut(string(first.Data), ",r=")
			writeMsg(t, server, &pgproto3.AuthenticationSASLContinue{Data: []byte("r=" + nonce + "srv,s=" +
				base64.StdEncoding.EncodeToString(other.Salt) + ",i=" + strconv.Itoa(other.Iterations))})
		}},
		{"a cleartext request", "28000", `the backend asks role "r" for a password`, func(server net.Conn) {
			writeMsg(t, server, &pgproto3.AuthenticationCleartextPassword{})
		}},
		{"an MD5 request", "28000", `the backend asks role "r" for a password`, func(server net.Conn) {
			writeMsg(t, server, &pgproto3.AuthenticationMD5Password{Salt: [4]byte{1, 2, 3, 4}})
		}},
	} {
		client, server := net.Pipe()
		sent := make(chan int, 1)
		go func() {
			defer server.Close()
			server.SetDeadline(time.Now().Add(5 * time.Second))
			c.backend(server)
			n := 0
			for {
				if _, err := readFrontend(server); err != nil {
					break
				}
				n++
			}
			sent <- n
		}()
		w := &scramPassthroughConn{Conn: client, keys: keysFor(t, v, "role-Pass-1"), role: "r"}
		m, err := receive(t, w)
		e, ok := m.(*pgproto3.ErrorResponse)
		if err != nil || !ok || e.Code != c.code || !strings.HasPrefix(e.Message, c.message) {
			t.Fatalf("%s: pgconn sees %#v, %v", c.name, m, err)
		}
		client.Close()
		if n := <-sent; n != 0 {
			t.Fatalf("%s: %d more messages were sent to the backend", c.name, n)
		}
	}
}

// [backend] require_auth and channel_binding hold for a pass-through login
// too, which pgconn cannot check (it sees a backend that let it in): the
// wrapper refuses before it sends anything of the keys, and refuses a
// backend that let it in without asking when require_auth wants an
// exchange.
func TestSCRAMPassthroughKeepsRequireAuthAndChannelBinding(t *testing.T) {
	v := verifier(t, "role-Pass-1")
	// asks plays a backend that sends first and reports anything it then
	// receives from the wrapper.
	asks := func(first pgproto3.BackendMessage) (net.Conn, chan []byte) {
		client, server := net.Pipe()
		got := make(chan []byte, 1)
		go func() {
			defer server.Close()
			server.SetDeadline(time.Now().Add(2 * time.Second))
			writeMsg(t, server, first)
			writeMsg(t, server, &pgproto3.ReadyForQuery{TxStatus: 'I'})
			body, _ := readFrontend(server)
			got <- body
		}()
		return client, got
	}
	sasl := &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}
	for name, tc := range map[string]struct {
		first          pgproto3.BackendMessage
		requireAuth    string
		channelBinding string
		refusal        string
	}{
		"SCRAM where require_auth allows only password": {sasl, "password", "prefer", `server requested scram-sha-256 authentication`},
		"SCRAM where require_auth forbids it":           {sasl, "!scram-sha-256", "prefer", `server requested scram-sha-256 authentication`},
		"SCRAM with channel_binding require":            {sasl, "", "require", "offers no SCRAM-SHA-256-PLUS over TLS"},
		"trust where require_auth wants SCRAM":          {&pgproto3.AuthenticationOk{}, "scram-sha-256", "prefer", "server did not complete authentication"},
		"trust with channel_binding require":            {&pgproto3.AuthenticationOk{}, "", "require", "without authenticating"},
	} {
		ra, err := config.ParseRequireAuth(tc.requireAuth)
		if err != nil {
			t.Fatal(err)
		}
		client, got := asks(tc.first)
		w := &scramPassthroughConn{Conn: client, keys: keysFor(t, v, "role-Pass-1"), role: "r", requireAuth: ra, channelBinding: tc.channelBinding}
		_, err = receive(t, w)
		if err == nil || !strings.Contains(err.Error(), tc.refusal) {
			t.Errorf("%s: %v, want a refusal with %q", name, err, tc.refusal)
		}
		client.Close()
		if body := <-got; len(body) > 0 {
			t.Errorf("%s: the wrapper sent %q", name, body)
		}
	}
	// Allowed, the trusting backend lets the login through.
	ra, _ := config.ParseRequireAuth("scram-sha-256,none")
	client, _ := asks(&pgproto3.AuthenticationOk{})
	w := &scramPassthroughConn{Conn: client, keys: keysFor(t, v, "role-Pass-1"), role: "r", requireAuth: ra, channelBinding: "prefer"}
	if m, err := receive(t, w); err != nil {
		t.Fatalf("trust under scram-sha-256,none: %v", err)
	} else if _, ok := m.(*pgproto3.AuthenticationOk); !ok {
		t.Fatalf("trust under scram-sha-256,none: %T", m)
	}
	client.Close()
}

// tlsPipe is a TLS connection over a pipe: the client's end, and the
// server's end with the certificate it presented.
func tlsPipe(t *testing.T) (*tls.Conn, *tls.Conn, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "backend"}, DNSNames: []string{"backend"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(cryptorand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	a, b := net.Pipe()
	srv := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}})
	cli := tls.Client(a, &tls.Config{InsecureSkipVerify: true})
	done := make(chan error, 1)
	go func() { done <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return cli, srv, leaf
}

// Over TLS a pass-through login binds SCRAM to the channel as pgconn binds
// a password login (SCRAM-SHA-256-PLUS, tls-server-end-point), so that
// channel_binding = "require" holds for it too: a backend that terminates
// the TLS connection itself and holds the verifier passes, a man in the
// middle, whose certificate the binding names, does not.
func TestSCRAMPassthroughBindsToTheTLSChannel(t *testing.T) {
	v := verifier(t, "role-Pass-1")
	creds := scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(v.Salt), Iters: v.Iterations}, StoredKey: v.StoredKey, ServerKey: v.ServerKey}
	// backend runs the server's side over conn: bound to the certificate
	// of cb, or, cb empty, offering SCRAM-SHA-256 alone.
	backend := func(conn net.Conn, cb []byte, result chan<- error) {
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		srv, _ := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
		conv := srv.NewConversation()
		mechs := []string{"SCRAM-SHA-256"}
		if cb != nil {
			conv = srv.NewConversationWithChannelBindingRequired(scram.ChannelBinding{Type: scram.ChannelBindingTLSServerEndpoint, Data: cb})
			mechs = []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}
		}
		writeMsg(t, conn, &pgproto3.AuthenticationSASL{AuthMechanisms: mechs})
		body, err := readFrontend(conn)
		if err != nil {
			result <- err
			return
		}
		var first pgproto3.SASLInitialResponse
		if err := first.Decode(body); err != nil {
			result <- err
			return
		}
		out, err := conv.Step(string(first.Data))
		if err != nil {
			result <- fmt.Errorf("client-first %q (%s): %w", first.Data, first.AuthMechanism, err)
			return
		}
		writeMsg(t, conn, &pgproto3.AuthenticationSASLContinue{Data: []byte(out)})
		if body, err = readFrontend(conn); err != nil {
			result <- err
			return
		}
		if out, err = conv.Step(string(body)); err != nil {
			writeMsg(t, conn, &pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: "password authentication failed"})
			result <- fmt.Errorf("client-final %q: %w", body, err)
			return
		}
		writeMsg(t, conn, &pgproto3.AuthenticationSASLFinal{Data: []byte(out)})
		writeMsg(t, conn, &pgproto3.AuthenticationOk{})
		writeMsg(t, conn, &pgproto3.ReadyForQuery{TxStatus: 'I'})
		result <- nil
	}
	// require_auth = scram-sha-256 throughout: the AuthenticationOk that
	// ends a completed exchange is no login without one.
	ra, err := config.ParseRequireAuth("scram-sha-256")
	if err != nil {
		t.Fatal(err)
	}
	login := func(cli net.Conn, channelBinding string) error {
		w := &scramPassthroughConn{Conn: cli, keys: keysFor(t, v, "role-Pass-1"), role: "r", channelBinding: channelBinding, requireAuth: ra}
		for {
			m, err := receive(t, w)
			if err != nil {
				return err
			}
			switch m := m.(type) {
			case *pgproto3.ReadyForQuery:
				return nil
			case *pgproto3.ErrorResponse:
				return fmt.Errorf("%s %s", m.Code, m.Message)
			}
		}
	}
	cb := func(leaf *x509.Certificate) []byte {
		b, err := scram.NewTLSServerEndpointBinding(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}})
		if err != nil {
			t.Fatal(err)
		}
		return b.Data
	}

	for _, mode := range []string{"require", "prefer"} {
		cli, srv, leaf := tlsPipe(t)
		result := make(chan error, 1)
		go backend(srv, cb(leaf), result)
		if err := login(cli, mode); err != nil {
			t.Fatalf("channel_binding %s, a backend with the verifier: %v", mode, err)
		}
		if err := <-result; err != nil {
			t.Fatalf("channel_binding %s: the backend: %v", mode, err)
		}
	}
	// A man in the middle: the backend's binding names another
	// certificate than the one pgwarden's TLS connection saw.
	cli, srv, _ := tlsPipe(t)
	_, _, other := tlsPipe(t)
	result := make(chan error, 1)
	go backend(srv, cb(other), result)
	if err := login(cli, "require"); err == nil {
		t.Fatal("a binding to another certificate logged in")
	}
	if err := <-result; err == nil {
		t.Fatal("the backend accepted a binding to another certificate")
	}
	// A backend that offers no PLUS over TLS: "y" under prefer (which
	// the server accepts), a refusal under require before anything is sent.
	cli, srv, _ = tlsPipe(t)
	go backend(srv, nil, result)
	if err := login(cli, "prefer"); err != nil {
		t.Fatalf("no PLUS offered, prefer: %v", err)
	}
	if err := <-result; err != nil {
		t.Fatalf("no PLUS offered, prefer: the backend: %v", err)
	}
	cli, srv, _ = tlsPipe(t)
	go backend(srv, nil, result)
	if err := login(cli, "require"); err == nil || !strings.Contains(err.Error(), "offers no SCRAM-SHA-256-PLUS") {
		t.Fatalf("no PLUS offered, require: %v", err)
	}
	cli.Close()
	<-result
}

package authcore

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
)

func scramUsers(t *testing.T) *Authenticator {
	t.Helper()
	h, _ := HashPassword(AlgoSCRAM, "pencil-Pass")
	b, _ := HashPassword(AlgoBcrypt, "pencil-Pass")
	us := mustUsers(t, "[[user]]\nname = \"alice\"\npassword = \""+h+"\"\n[[user]]\nname = \"bob\"\npassword = \""+b+"\"\n"+
		"[[user]]\nname = \"old\"\npassword = \""+h+"\"\nvalid_until = 2001-01-01T00:00:00Z\n")
	return NewAuthenticator(us, NewHashLimiter(0))
}

// run drives a full exchange with xdg-go/scram's client.
func run(t *testing.T, a *Authenticator, user, password, mech string, serverCB []byte, client *scram.ClientConversation) error {
	t.Helper()
	s, err := a.StartSCRAM(context.Background(), user, mech, serverCB)
	if err != nil {
		return err
	}
	c1, err := client.Step("")
	if err != nil {
		t.Fatal(err)
	}
	s1, _, err := s.Step([]byte(c1))
	if err != nil {
		return err
	}
	c2, err := client.Step(string(s1))
	if err != nil {
		t.Fatal(err)
	}
	s2, done, err := s.Step([]byte(c2))
	if err != nil {
		return err
	}
	if !done {
		t.Fatal("not done after the final message")
	}
	if _, err := client.Step(string(s2)); err != nil {
		t.Fatalf("client refused the server signature: %v", err)
	}
	return nil
}

func newClient(t *testing.T, password string) *scram.Client {
	c, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSCRAMExchanges(t *testing.T) {
	a := scramUsers(t)
	cb := []byte("0123456789abcdef0123456789abcdef")
	binding := scram.ChannelBinding{Type: scram.ChannelBindingTLSServerEndpoint, Data: cb}

	if err := run(t, a, "alice", "pencil-Pass", MechSCRAM, nil, newClient(t, "pencil-Pass").NewConversation()); err != nil {
		t.Fatalf("plain SCRAM: %v", err)
	}
	if err := run(t, a, "alice", "pencil-Pass", MechSCRAMPlus, cb, newClient(t, "pencil-Pass").NewConversationWithChannelBinding(binding)); err != nil {
		t.Fatalf("SCRAM-PLUS: %v", err)
	}
	// Over TLS a client may still choose plain SCRAM with flag n.
	if err := run(t, a, "alice", "pencil-Pass", MechSCRAM, cb, newClient(t, "pencil-Pass").NewConversation()); err != nil {
		t.Fatalf("plain SCRAM over TLS: %v", err)
	}

	failures := map[string]struct {
		user, pw string
		reason   Reason
	}{
		"wrong password":   {"alice", "wrong", ReasonSCRAMProof},
		"unknown user":     {"ghost", "pencil-Pass", ReasonUnknownUser},
		"bcrypt-only user": {"bob", "pencil-Pass", ReasonNotSCRAM},
		"expired user":     {"old", "pencil-Pass", ReasonExpired},
		"empty password":   {"alice", "", ReasonSCRAMProof},
	}
	for name, f := range failures {
		err := run(t, a, f.user, f.pw, MechSCRAM, nil, newClient(t, f.pw).NewConversation())
		if !errors.Is(err, ErrPasswordFailed) || ReasonOf(err) != string(f.reason) {
			t.Errorf("%s: got %v, want failure %q", name, err, f.reason)
		}
	}
}

func TestSCRAMRefusesDowngradeAndMismatchedBinding(t *testing.T) {
	a := scramUsers(t)
	cb := []byte("0123456789abcdef0123456789abcdef")
	// 'y' when PLUS was offered: a man in the middle stripped PLUS.
	err := run(t, a, "alice", "pencil-Pass", MechSCRAM, cb, newClient(t, "pencil-Pass").NewConversationAdvertisingChannelBinding())
	if !errors.Is(err, ErrSASLProtocol) {
		t.Fatalf("downgrade: %v", err)
	}
	// PLUS selected without TLS.
	if _, err := a.StartSCRAM(context.Background(), "alice", MechSCRAMPlus, nil); !errors.Is(err, ErrSASLProtocol) {
		t.Fatalf("PLUS without TLS: %v", err)
	}
	// Binding data that is not our certificate's hash.
	other := scram.ChannelBinding{Type: scram.ChannelBindingTLSServerEndpoint, Data: []byte("another certificate's hash......")}
	err = run(t, a, "alice", "pencil-Pass", MechSCRAMPlus, cb, newClient(t, "pencil-Pass").NewConversationWithChannelBinding(other))
	if !errors.Is(err, ErrSASLProtocol) {
		t.Fatalf("binding mismatch: %v", err)
	}
	if _, err := a.StartSCRAM(context.Background(), "alice", "SCRAM-SHA-1", nil); !errors.Is(err, ErrSASLProtocol) {
		t.Fatal("unknown mechanism accepted")
	}
}

func TestSCRAMMalformedMessagesAreProtocolViolations(t *testing.T) {
	a := scramUsers(t)
	for _, msg := range []string{"", "x,,n=,r=abc", "n,,", "n,,n=,r=", "p=tls-server-end-point,,n=,r=abc"} {
		s, _ := a.StartSCRAM(context.Background(), "alice", MechSCRAM, nil)
		if _, _, err := s.Step([]byte(msg)); !errors.Is(err, ErrSASLProtocol) {
			t.Errorf("%q: %v", msg, err)
		}
	}
}

// The mock salt of an unknown user is stable, so probing twice shows no
// difference from a real user.
func TestSCRAMMockSaltIsStablePerName(t *testing.T) {
	a := scramUsers(t)
	first := func() string {
		s, _ := a.StartSCRAM(context.Background(), "ghost", MechSCRAM, nil)
		out, _, err := s.Step([]byte("n,,n=,r=clientnonce"))
		if err != nil {
			t.Fatal(err)
		}
		return string(out[len("r=clientnonce")+32:])
	}
	if x, y := first(), first(); x != y {
		t.Fatalf("mock salt changes: %q vs %q", x, y)
	}
}

// A proven exchange leaves the client's ClientKey (for [backend]
// passthrough), recovered from its proof: exactly the key the password
// derives, with the verifier's salt and count; channel binding changes
// nothing. A refused exchange leaves none.
func TestAProvenExchangeLeavesTheClientsKey(t *testing.T) {
	a := scramUsers(t)
	v := a.users.Lookup("alice").hash.(*SCRAMVerifier)
	salted, _ := pbkdf2.Key(sha256.New, "pencil-Pass", v.Salt, v.Iterations, sha256.Size)
	m := hmac.New(sha256.New, salted)
	m.Write([]byte("Client Key"))
	want := m.Sum(nil)
	cb := []byte("certificate hash")
	binding := scram.ChannelBinding{Type: scram.ChannelBindingTLSServerEndpoint, Data: cb}
	for _, c := range []struct {
		mech   string
		cb     []byte
		client *scram.ClientConversation
	}{
		{MechSCRAM, nil, newClient(t, "pencil-Pass").NewConversation()},
		{MechSCRAMPlus, cb, newClient(t, "pencil-Pass").NewConversationWithChannelBinding(binding)},
	} {
		s, err := a.StartSCRAM(context.Background(), "alice", c.mech, c.cb)
		if err != nil {
			t.Fatal(err)
		}
		c1, _ := c.client.Step("")
		s1, _, err := s.Step([]byte(c1))
		if err != nil {
			t.Fatal(err)
		}
		if s.Keys() != nil {
			t.Fatal("keys before the proof")
		}
		c2, _ := c.client.Step(string(s1))
		if _, _, err := s.Step([]byte(c2)); err != nil {
			t.Fatal(err)
		}
		k := s.Keys()
		if k == nil || !bytes.Equal(k.ClientKey, want) || !bytes.Equal(k.ServerKey, v.ServerKey) || !bytes.Equal(k.Salt, v.Salt) || k.Iterations != v.Iterations {
			t.Fatalf("%s: keys %+v, want ClientKey %x", c.mech, k, want)
		}
	}
	s, _ := a.StartSCRAM(context.Background(), "alice", MechSCRAM, nil)
	client := newClient(t, "wrong-Pass").NewConversation()
	c1, _ := client.Step("")
	s1, _, _ := s.Step([]byte(c1))
	c2, _ := client.Step(string(s1))
	if _, _, err := s.Step([]byte(c2)); err == nil || s.Keys() != nil {
		t.Fatalf("a wrong password: %v, keys %v", err, s.Keys())
	}
}

// An authorization identity (gs2 header "n,a=NAME,") asks to act as
// another user, which PostgreSQL refuses ("client uses authorization
// identity, but it is not supported"); pgwarden used to ignore it and
// prove the startup user. A mandatory extension (m=) is refused by both.
func TestSCRAMRefusesAnAuthorizationIdentityAndMandatoryExtensions(t *testing.T) {
	a := scramUsers(t)
	c, err := scram.SHA256.NewClient("", "pencil-Pass", "bob")
	if err != nil {
		t.Fatal(err)
	}
	err = run(t, a, "alice", "pencil-Pass", MechSCRAM, nil, c.NewConversation())
	if !errors.Is(err, ErrSASLProtocol) || !strings.Contains(err.Error(), "authorization identity") {
		t.Fatalf("authzid: %v", err)
	}
	for _, msg := range []string{"n,a=bob,n=,r=abcdef", "n,a=,n=,r=abcdef", "n,,m=ext,n=,r=abcdef"} {
		s, _ := a.StartSCRAM(context.Background(), "alice", MechSCRAM, nil)
		if _, _, err := s.Step([]byte(msg)); !errors.Is(err, ErrSASLProtocol) {
			t.Errorf("%q: %v", msg, err)
		}
	}
}

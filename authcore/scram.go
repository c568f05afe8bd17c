package authcore

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/xdg-go/scram"
)

// SASL mechanism names offered on the wire.
const (
	MechSCRAM     = "SCRAM-SHA-256"
	MechSCRAMPlus = "SCRAM-SHA-256-PLUS"
)

// ErrSASLProtocol marks a malformed or inconsistent SASL exchange: a
// protocol violation (08P01), not a wrong password.
var ErrSASLProtocol = errors.New("SASL protocol violation")

type saslError struct{ msg string }

func (e *saslError) Error() string        { return e.msg }
func (e *saslError) Is(target error) bool { return target == ErrSASLProtocol }

func saslViolation(format string, args ...any) error {
	return &saslError{msg: fmt.Sprintf(format, args...)}
}

// SCRAM is one server-side SCRAM-SHA-256 exchange. It does no I/O: the
// frontend feeds it client messages and sends what Step returns, so the same
// state machine serves every transport and is tested without sockets.
//
// A user who does not exist, or whose stored hash is not a SCRAM verifier,
// gets a complete mock exchange with a stable fake salt, ending in the same
// failure as a wrong password (as PostgreSQL's scram_mock_salt does).
type SCRAM struct {
	auth   *Authenticator
	user   *User
	doomed Reason // why the exchange must fail whatever the client sends
	conv   *scram.ServerConversation
	mech   string
	plus   bool // channel binding was offered
	step   int
	// clientFirst and serverFirst are kept to recover the client's key
	// (see Keys) once its proof checked out.
	clientFirst, serverFirst string
	keys                     *SCRAMKeys
}

// SCRAMKeys are what a proven SCRAM-SHA-256 client leaves behind: the
// ClientKey recovered from its proof, with the verifier's salt, iteration
// count and ServerKey. They log in to any server holding the same
// verifier (a PostgreSQL role whose pg_authid entry pgwarden read through
// auth_query, say), as PgBouncer's SCRAM pass-through does, and to
// nothing else: the password cannot be derived from them. They are
// password-equivalent for SCRAM, so they are never logged and are dropped
// once the backend login is done.
type SCRAMKeys struct {
	Salt       []byte
	Iterations int
	ClientKey  []byte
	ServerKey  []byte
}

// StartSCRAM begins an exchange for the user named at startup with the
// mechanism the client chose. cb is the tls-server-end-point hash of the
// server certificate when the connection is TLS (PLUS is then offered), else
// nil.
func (a *Authenticator) StartSCRAM(ctx context.Context, name, mechanism string, cb []byte) (*SCRAM, error) {
	s := &SCRAM{auth: a, mech: mechanism, plus: len(cb) > 0}
	switch {
	case mechanism == MechSCRAM:
	case mechanism == MechSCRAMPlus && s.plus:
	default:
		return nil, saslViolation("client selected an invalid SASL authentication mechanism")
	}
	creds := a.mockCredentials(name)
	u, err := a.lookup(ctx, name)
	switch {
	case err != nil:
		return nil, &storeDownError{err}
	case u == nil:
		s.doomed = ReasonUnknownUser
	case u.hash == nil:
		s.doomed = ReasonNoPassword
	default:
		v, ok := u.hash.(*SCRAMVerifier)
		if !ok {
			s.doomed = ReasonNotSCRAM
		} else if err := a.limits.Check(v); err != nil {
			s.doomed = Reason("stored hash unusable: " + err.Error())
		} else {
			creds = scram.StoredCredentials{
				KeyFactors: scram.KeyFactors{Salt: string(v.Salt), Iters: v.Iterations},
				StoredKey:  v.StoredKey, ServerKey: v.ServerKey,
			}
			s.user = u
		}
	}
	// The name inside the SCRAM message is ignored, as in PostgreSQL:
	// the startup packet's user is the one being authenticated.
	server, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	if err != nil {
		return nil, err
	}
	if s.plus {
		s.conv = server.NewConversationWithChannelBinding(scram.ChannelBinding{Type: scram.ChannelBindingTLSServerEndpoint, Data: cb})
	} else {
		s.conv = server.NewConversation()
	}
	return s, nil
}

// mockCredentials are what an unknown user is challenged with: a salt that
// is the same on every attempt for that name (so probing shows nothing), and
// keys no proof can match.
func (a *Authenticator) mockCredentials(name string) scram.StoredCredentials {
	m := hmac.New(sha256.New, mockKeyBytes()) // see mockKey
	m.Write([]byte("scram mock salt\x00" + name))
	salt := m.Sum(nil)[:16]
	// The iteration count a known user of the same decoy would show.
	iters := scramIterations
	if v, ok := a.users.decoyFor(name).(*SCRAMVerifier); ok {
		iters = v.Iterations
	}
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: iters},
		StoredKey:  randomBytes(sha256.Size), ServerKey: randomBytes(sha256.Size),
	}
}

// Step takes the client's next message and returns the server's answer.
// done is true after the final message; the user is then proven. Errors
// satisfy errors.Is ErrSASLProtocol (malformed exchange) or
// ErrPasswordFailed (wrong proof, unknown or unusable user).
func (s *SCRAM) Step(in []byte) (out []byte, done bool, err error) {
	s.step++
	switch s.step {
	case 1:
		if err := s.checkGS2(string(in)); err != nil {
			return nil, false, err
		}
		resp, err := s.conv.Step(string(in))
		if err != nil {
			return nil, false, saslViolation("malformed SCRAM message: %v", err)
		}
		s.clientFirst, s.serverFirst = string(in), resp
		return []byte(resp), false, nil
	case 2:
		resp, err := s.conv.Step(string(in))
		if s.doomed != "" {
			return nil, true, Fail(s.doomed)
		}
		if err != nil {
			msg := err.Error()
			switch {
			case strings.Contains(msg, "proof invalid"):
				return nil, true, Fail(ReasonSCRAMProof)
			case strings.Contains(msg, "channel binding"):
				return nil, true, saslViolation("SCRAM channel binding check failed")
			}
			return nil, true, saslViolation("malformed SCRAM message: %v", err)
		}
		if err := s.auth.CheckUsable(s.user); err != nil {
			return nil, true, err
		}
		s.keys = s.recoverKeys(string(in))
		return []byte(resp), true, nil
	}
	return nil, true, saslViolation("unexpected SASL message after the exchange ended")
}

// User is the proven user once Step reported done without error.
func (s *SCRAM) User() *User { return s.user }

// Forget overwrites the ClientKey, once the backend login that needed it
// is over; nil-safe.
func (k *SCRAMKeys) Forget() {
	if k != nil {
		clear(k.ClientKey)
	}
}

// Proof is the client proof these keys give for authMessage (RFC 5802):
// what pgwarden sends a backend that holds the same verifier.
func (k *SCRAMKeys) Proof(authMessage string) []byte {
	storedKey := sha256.Sum256(k.ClientKey)
	return xorClientSignature(storedKey[:], authMessage, k.ClientKey)
}

// ServerSignature is what a server holding the verifier answers for
// authMessage; a backend that answers anything else does not hold it.
func (k *SCRAMKeys) ServerSignature(authMessage string) []byte {
	return hmacSHA256(k.ServerKey, authMessage)
}

// xorClientSignature is x XOR HMAC(StoredKey, AuthMessage): with x the
// ClientKey it is the client's proof, with x the proof it is the ClientKey
// (RFC 5802 section 3).
func xorClientSignature(storedKey []byte, authMessage string, x []byte) []byte {
	out := hmacSHA256(storedKey, authMessage)
	for i := range out {
		out[i] ^= x[i]
	}
	return out
}

// Keys are the proven client's SCRAM keys once Step reported done without
// error; nil before, or if they could not be recovered.
func (s *SCRAM) Keys() *SCRAMKeys { return s.keys }

// recoverKeys computes the ClientKey from the client's final message, as
// the server side of RFC 5802 can: ClientKey = ClientProof XOR
// HMAC(StoredKey, AuthMessage). It is checked against the StoredKey (the
// check the proof passed), so a key that would not log in is never kept.
func (s *SCRAM) recoverKeys(final string) *SCRAMKeys {
	v, ok := s.user.hash.(*SCRAMVerifier)
	if !ok {
		return nil
	}
	// client-first-message-bare follows the GS2 header's two commas.
	parts := strings.SplitN(s.clientFirst, ",", 3)
	i := strings.LastIndex(final, ",p=")
	if len(parts) != 3 || i < 0 {
		return nil
	}
	proof, err := base64.StdEncoding.DecodeString(final[i+3:])
	if err != nil || len(proof) != sha256.Size {
		return nil
	}
	authMessage := parts[2] + "," + s.serverFirst + "," + final[:i]
	clientKey := xorClientSignature(v.StoredKey, authMessage, proof)
	if sum := sha256.Sum256(clientKey); !hmac.Equal(sum[:], v.StoredKey) {
		return nil
	}
	return &SCRAMKeys{Salt: append([]byte(nil), v.Salt...), Iterations: v.Iterations,
		ClientKey: clientKey, ServerKey: append([]byte(nil), v.ServerKey...)}
}

// checkGS2 enforces what xdg-go/scram cannot know: the GS2 flag must agree
// with the mechanism the client selected (RFC 5802 section 6).
func (s *SCRAM) checkGS2(first string) error {
	if first == "" {
		return saslViolation("malformed SCRAM message: empty client-first-message")
	}
	switch first[0] {
	case 'p':
		if s.mech != MechSCRAMPlus {
			return saslViolation("channel binding was requested, but mechanism %s was selected", s.mech)
		}
	case 'y':
		if s.plus {
			// Downgrade: the client supports binding but believes the
			// server does not, though PLUS was offered.
			return saslViolation("SCRAM channel binding negotiation error: client supports channel binding but thinks the server does not")
		}
	case 'n':
		if s.mech == MechSCRAMPlus {
			return saslViolation("mechanism %s needs channel binding", s.mech)
		}
	default:
		return saslViolation("malformed SCRAM message: bad GS2 header")
	}
	// The GS2 header's second field is the authorization identity: a
	// request to act as another user once proven. PostgreSQL refuses it
	// (read_client_first_message); taken silently, the client would be
	// told yes while proving the startup user only.
	if _, rest, ok := strings.Cut(first, ","); ok && strings.HasPrefix(rest, "a=") {
		return saslViolation("client uses authorization identity, but it is not supported")
	}
	// RFC 5802: the client nonce is a non-empty printable string.
	i := strings.Index(first, ",r=")
	if i < 0 {
		return saslViolation("malformed SCRAM message: no client nonce")
	}
	nonce, _, _ := strings.Cut(first[i+3:], ",")
	if nonce == "" {
		return saslViolation("malformed SCRAM message: empty client nonce")
	}
	for _, c := range nonce {
		if c < 0x21 || c > 0x7e || c == ',' {
			return saslViolation("malformed SCRAM message: non-printable client nonce")
		}
	}
	return nil
}

package authcore

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/xdg-go/stringprep"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Hash is a stored password hash of any supported kind.
type Hash interface {
	// Verify reports whether password matches. It is the expensive call that
	// the credential cache and the hashing semaphore exist for.
	Verify(password string) bool
	// Kind names the algorithm for logs: "scram-sha-256", "bcrypt", ...
	Kind() string
}

// Algorithms that hash-password can write.
const (
	AlgoSCRAM  = "scram-sha-256"
	AlgoBcrypt = "bcrypt"
	AlgoPBKDF2 = "pbkdf2-sha512"
	AlgoArgon2 = "argon2id"
)

// Parameters of newly written hashes. SCRAM uses PostgreSQL's default
// iteration count so that verifiers are interchangeable with pg_authid's.
const (
	scramIterations  = 4096
	bcryptCost       = 10
	pbkdf2Iterations = 210000 // OWASP 2023 for PBKDF2-HMAC-SHA512
	argon2Time       = 2
	argon2Memory     = 19 * 1024 // KiB, OWASP's recommended minimum
	argon2Threads    = 1
)

// ParseHash reads a stored hash in any accepted format.
func ParseHash(s string) (Hash, error) {
	switch {
	case strings.HasPrefix(s, "SCRAM-SHA-256$"):
		return ParseSCRAM(s)
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return nil, fmt.Errorf("bad bcrypt hash: %v", err)
		}
		return bcryptHash(s), nil
	case strings.HasPrefix(s, "$pbkdf2-sha512$"):
		return parsePBKDF2(s)
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2(s)
	case s == "":
		return nil, errors.New("empty password hash")
	}
	return nil, errors.New("unrecognized password hash (want SCRAM-SHA-256$, $2a$/$2b$/$2y$, $pbkdf2-sha512$ or $argon2id$); plain-text passwords are not accepted")
}

// SCRAMVerifier is PostgreSQL's SCRAM-SHA-256 verifier:
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>.
type SCRAMVerifier struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
}

// ParseSCRAM reads a verifier in PostgreSQL's pg_authid format.
func ParseSCRAM(s string) (*SCRAMVerifier, error) {
	bad := errors.New("bad SCRAM-SHA-256 verifier: want SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>")
	rest, ok := strings.CutPrefix(s, "SCRAM-SHA-256$")
	if !ok {
		return nil, bad
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return nil, bad
	}
	iterStr, saltStr, ok1 := strings.Cut(params, ":")
	storedStr, serverStr, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return nil, bad
	}
	iter, err := strconv.Atoi(iterStr)
	if err != nil || iter < 1 || iter > 10_000_000 {
		return nil, bad
	}
	v := &SCRAMVerifier{Iterations: iter}
	dec := base64.StdEncoding
	if v.Salt, err = dec.DecodeString(saltStr); err != nil || len(v.Salt) == 0 {
		return nil, bad
	}
	if v.StoredKey, err = dec.DecodeString(storedStr); err != nil || len(v.StoredKey) != sha256.Size {
		return nil, bad
	}
	if v.ServerKey, err = dec.DecodeString(serverStr); err != nil || len(v.ServerKey) != sha256.Size {
		return nil, bad
	}
	return v, nil
}

// Kind implements Hash.
func (v *SCRAMVerifier) Kind() string { return AlgoSCRAM }

// Verify derives the StoredKey from password as a SCRAM client would and
// compares it in constant time.
func (v *SCRAMVerifier) Verify(password string) bool {
	salted := scramSaltedPassword(password, v.Salt, v.Iterations)
	clientKey := hmacSHA256(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	return subtle.ConstantTimeCompare(stored[:], v.StoredKey) == 1
}

// String renders the verifier in PostgreSQL's format.
func (v *SCRAMVerifier) String() string {
	enc := base64.StdEncoding
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", v.Iterations, enc.EncodeToString(v.Salt),
		enc.EncodeToString(v.StoredKey), enc.EncodeToString(v.ServerKey))
}

// NewSCRAMVerifier computes a verifier for password with a fresh salt.
func NewSCRAMVerifier(password string, iterations int) *SCRAMVerifier {
	salt := make([]byte, 16)
	rand.Read(salt)
	salted := scramSaltedPassword(password, salt, iterations)
	stored := sha256.Sum256(hmacSHA256(salted, "Client Key"))
	return &SCRAMVerifier{Iterations: iterations, Salt: salt, StoredKey: stored[:], ServerKey: hmacSHA256(salted, "Server Key")}
}

func scramSaltedPassword(password string, salt []byte, iter int) []byte {
	// As PostgreSQL's pg_saslprep: a password that SASLprep refuses is used
	// as it is, so that any byte string can still be a password.
	if prepped, err := stringprep.SASLprep.Prepare(password); err == nil {
		password = prepped
	}
	key, _ := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	return key
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

type bcryptHash string

func (h bcryptHash) Kind() string { return AlgoBcrypt }

func (h bcryptHash) Verify(password string) bool {
	// bcrypt reads only 72 bytes; a longer password would be silently
	// truncated, so it never matches (no truncation, as the policy says).
	if len(password) > 72 {
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(h), []byte(password)) == nil
}

// pbkdf2Hash is passlib's (and CrateDB-compatible tooling's)
// $pbkdf2-sha512$<rounds>$<salt>$<hash>, salt and hash in "adapted base64"
// ('.' for '+', no padding); standard base64 is accepted too.
type pbkdf2Hash struct {
	iter      int
	salt, key []byte
}

func parsePBKDF2(s string) (Hash, error) {
	bad := errors.New("bad pbkdf2-sha512 hash: want $pbkdf2-sha512$<rounds>$<salt>$<hash>")
	parts := strings.Split(s, "$")
	if len(parts) != 5 || parts[0] != "" {
		return nil, bad
	}
	iter, err := strconv.Atoi(parts[2])
	if err != nil || iter < 1 || iter > 100_000_000 {
		return nil, bad
	}
	salt, err1 := ab64Decode(parts[3])
	key, err2 := ab64Decode(parts[4])
	if err1 != nil || err2 != nil || len(salt) == 0 || len(key) < 16 {
		return nil, bad
	}
	return &pbkdf2Hash{iter: iter, salt: salt, key: key}, nil
}

func ab64Decode(s string) ([]byte, error) {
	s = strings.TrimRight(strings.ReplaceAll(s, ".", "+"), "=")
	return base64.RawStdEncoding.DecodeString(s)
}

func (h *pbkdf2Hash) Kind() string { return AlgoPBKDF2 }

func (h *pbkdf2Hash) Verify(password string) bool {
	got, err := pbkdf2.Key(sha512.New, password, h.salt, h.iter, len(h.key))
	return err == nil && subtle.ConstantTimeCompare(got, h.key) == 1
}

// argon2Hash is the PHC string $argon2id$v=19$m=<KiB>,t=<time>,p=<threads>$<salt>$<hash>.
type argon2Hash struct {
	mem, time uint32
	threads   uint8
	salt, key []byte
}

func parseArgon2(s string) (Hash, error) {
	bad := errors.New("bad argon2id hash: want $argon2id$v=19$m=<KiB>,t=<n>,p=<n>$<salt>$<hash>")
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[2] != "v=19" {
		return nil, bad
	}
	h := &argon2Hash{}
	var p int
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &h.mem, &h.time, &p); n != 3 || err != nil {
		return nil, bad
	}
	// Bounds keep a hostile users file or auth_query row from asking for
	// gigabytes of memory per login.
	if h.mem < 8 || h.mem > 1<<21 || h.time < 1 || h.time > 100 || p < 1 || p > 64 {
		return nil, bad
	}
	h.threads = uint8(p)
	var err1, err2 error
	h.salt, err1 = base64.RawStdEncoding.DecodeString(parts[4])
	h.key, err2 = base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(h.key) < 16 || len(h.key) > 1024 {
		return nil, bad
	}
	return h, nil
}

func (h *argon2Hash) Kind() string { return AlgoArgon2 }

func (h *argon2Hash) Verify(password string) bool {
	got := argon2.IDKey([]byte(password), h.salt, h.time, h.mem, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(got, h.key) == 1
}

// HashPassword hashes password with algo (one of the Algo constants).
func HashPassword(algo, password string) (string, error) {
	switch algo {
	case AlgoSCRAM, "":
		return NewSCRAMVerifier(password, scramIterations).String(), nil
	case AlgoBcrypt:
		if len(password) > 72 {
			return "", errors.New("bcrypt reads at most 72 bytes of a password; use scram-sha-256 or argon2id for longer ones")
		}
		b, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
		return string(b), err
	case AlgoPBKDF2:
		salt := randomBytes(16)
		key, err := pbkdf2.Key(sha512.New, password, salt, pbkdf2Iterations, sha512.Size)
		if err != nil {
			return "", err
		}
		ab64 := func(b []byte) string {
			return strings.ReplaceAll(base64.RawStdEncoding.EncodeToString(b), "+", ".")
		}
		return fmt.Sprintf("$pbkdf2-sha512$%d$%s$%s", pbkdf2Iterations, ab64(salt), ab64(key)), nil
	case AlgoArgon2:
		salt := randomBytes(16)
		key := argon2.IDKey([]byte(password), salt, argon2Time, argon2Memory, argon2Threads, 32)
		enc := base64.RawStdEncoding
		return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", argon2Memory, argon2Time, argon2Threads,
			enc.EncodeToString(salt), enc.EncodeToString(key)), nil
	}
	return "", fmt.Errorf("unknown algorithm %q (want scram-sha-256, bcrypt, pbkdf2-sha512 or argon2id)", algo)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

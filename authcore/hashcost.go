package authcore

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/pgwarden/pgwarden/config"
)

// HashLimits bound the work one stored hash may ask of pgwarden ([users]
// max_*). A hash above them is unusable wherever it comes from: the users
// file refuses to load, and a hash from auth_query fails like a wrong
// password, so a backend role that sets its own verifier to ten million
// iterations cannot tie up the hashing slots.
type HashLimits struct {
	SCRAMIterations  int
	PBKDF2Iterations int
	BcryptCost       int
	Argon2MemoryKiB  int
	Argon2Time       int
}

// DefaultHashLimits are the [users] defaults (see config.Default).
var DefaultHashLimits = HashLimitsOf(config.Default())

// HashLimitsOf reads the limits in force from [users].
func HashLimitsOf(c *config.Config) HashLimits {
	return HashLimits{
		SCRAMIterations:  c.Users.MaxSCRAMIterations,
		PBKDF2Iterations: c.Users.MaxPBKDF2Iterations,
		BcryptCost:       c.Users.MaxBcryptCost,
		Argon2MemoryKiB:  c.Users.MaxArgon2Memory,
		Argon2Time:       c.Users.MaxArgon2Time,
	}
}

// Check reports why h costs more than the limits allow, or nil.
func (l HashLimits) Check(h Hash) error {
	switch h := h.(type) {
	case *SCRAMVerifier:
		if h.Iterations > l.SCRAMIterations {
			return fmt.Errorf("SCRAM iteration count %d is over users.max_scram_iterations (%d)", h.Iterations, l.SCRAMIterations)
		}
	case *pbkdf2Hash:
		if h.iter > l.PBKDF2Iterations {
			return fmt.Errorf("PBKDF2 iteration count %d is over users.max_pbkdf2_iterations (%d)", h.iter, l.PBKDF2Iterations)
		}
	case bcryptHash:
		if c, err := bcrypt.Cost([]byte(h)); err != nil || c > l.BcryptCost {
			return fmt.Errorf("bcrypt cost %d is over users.max_bcrypt_cost (%d)", c, l.BcryptCost)
		}
	case *argon2Hash:
		if int(h.mem) > l.Argon2MemoryKiB {
			return fmt.Errorf("argon2 memory %d KiB is over users.max_argon2_memory (%d)", h.mem, l.Argon2MemoryKiB)
		}
		if int(h.time) > l.Argon2Time {
			return fmt.Errorf("argon2 time %d is over users.max_argon2_time (%d)", h.time, l.Argon2Time)
		}
	}
	return nil
}

// CheckHashCost checks every user's stored hash against l; each problem
// names the users file and the line of that password.
func (us *Users) CheckHashCost(path string, l HashLimits) error {
	var errs config.Errors
	for i, u := range us.list {
		if u.hash == nil {
			continue
		}
		if err := l.Check(u.hash); err != nil {
			errs = append(errs, &config.Error{File: path, Line: u.passwordLine, Key: fmt.Sprintf("user[%d].password", i+1),
				Msg: fmt.Sprintf("user %q: %v; hash the password again (pgwarden user passwd) or raise the limit", u.Name, err)})
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// decoy is a hash that costs what h costs to verify and matches no
// password: same kind and parameters, a key no password derives.
func decoy(h Hash) Hash {
	switch h := h.(type) {
	case *SCRAMVerifier:
		return &SCRAMVerifier{Iterations: h.Iterations, Salt: randomBytes(len(h.Salt)), StoredKey: randomBytes(len(h.StoredKey)), ServerKey: randomBytes(len(h.ServerKey))}
	case *pbkdf2Hash:
		return &pbkdf2Hash{iter: h.iter, salt: randomBytes(len(h.salt)), key: randomBytes(len(h.key))}
	case *argon2Hash:
		return &argon2Hash{mem: h.mem, time: h.time, threads: h.threads, salt: randomBytes(len(h.salt)), key: randomBytes(len(h.key))}
	case bcryptHash:
		// $2b$NN$ + 22 characters of salt + 31 of checksum: keep the cost,
		// make salt and checksum up from bcrypt's alphabet.
		const alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
		s := string(h)
		if len(s) != 60 {
			return dummySCRAM()
		}
		var b strings.Builder
		b.WriteString(s[:7])
		for _, r := range randomBytes(53) {
			b.WriteByte(alphabet[int(r)%len(alphabet)])
		}
		return bcryptHash(b.String())
	}
	return dummySCRAM()
}

// decoyFor is what an unknown name (or a user without a usable hash) is
// checked against, so that its failure costs what a real user's costs. The
// users' own hash kinds and costs are the menu: each name always gets the
// decoy of one of them, chosen by a keyed hash of the name, in proportion
// to how many users have it. So the time a guess takes follows the same
// spread whether or not the name exists, whatever mix of bcrypt, SCRAM,
// PBKDF2 and argon2id the users file holds; without users, PostgreSQL's
// default SCRAM.
func (us *Users) decoyFor(name string) Hash {
	if us == nil || len(us.decoys) == 0 {
		return dummySCRAM()
	}
	m := hmac.New(sha256.New, mockKeyBytes()) // see mockKey
	m.Write([]byte(name))
	i := binary.BigEndian.Uint64(m.Sum(nil)) % uint64(len(us.decoys))
	return us.decoys[i]
}

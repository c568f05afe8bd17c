package authcore

import (
	"strings"
	"testing"
)

func TestEveryAlgorithmRoundTrips(t *testing.T) {
	for _, algo := range []string{AlgoSCRAM, AlgoBcrypt, AlgoPBKDF2, AlgoArgon2} {
		s, err := HashPassword(algo, "correct horse ✓")
		if err != nil {
			t.Fatal(err)
		}
		h, err := ParseHash(s)
		if err != nil {
			t.Fatalf("%s: %v", algo, err)
		}
		if h.Kind() != algo {
			t.Fatalf("kind %q, want %q", h.Kind(), algo)
		}
		if !h.Verify("correct horse ✓") {
			t.Fatalf("%s: right password refused", algo)
		}
		if h.Verify("correct horse") || h.Verify("") {
			t.Fatalf("%s: wrong password accepted", algo)
		}
	}
}

// Hashes made by other tools must verify.
func TestHashesFromOtherToolsVerify(t *testing.T) {
	cases := []struct{ name, hash, password string }{
		// Python's hashlib.pbkdf2_hmac written in passlib's format.
		{"passlib pbkdf2-sha512", "$pbkdf2-sha512$25000$c2FsdHNhbHRzYWx0IQ$bkybHi/7FfpDjb6B6ZQ/iISM7sY2jQVAk71eJevHrt60Pwf2w2ppXS7SHRg7IzCgc2LTHIK5yXT4ZxSsx3vrVg", "hunter2-passlib"},
		// RFC 7677's SCRAM-SHA-256 example (user "user", password "pencil"),
		// as PostgreSQL would store it.
		{"RFC 7677 verifier", "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", "pencil"},
	}
	for _, tc := range cases {
		h, err := ParseHash(tc.hash)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !h.Verify(tc.password) || h.Verify(tc.password+"x") {
			t.Fatalf("%s: verification wrong", tc.name)
		}
	}
}

func TestBcryptVariantsAndNoTruncation(t *testing.T) {
	s, _ := HashPassword(AlgoBcrypt, "pw-for-bcrypt")
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		h, err := ParseHash(prefix + s[4:])
		if err != nil || !h.Verify("pw-for-bcrypt") {
			t.Fatalf("%s: %v", prefix, err)
		}
	}
	long := strings.Repeat("a", 72)
	s, _ = HashPassword(AlgoBcrypt, long)
	h, _ := ParseHash(s)
	if h.Verify(long + "tail") {
		t.Fatal("bcrypt accepted a password longer than 72 bytes by truncating it")
	}
	if _, err := HashPassword(AlgoBcrypt, long+"b"); err == nil {
		t.Fatal("hashing more than 72 bytes with bcrypt must fail")
	}
}

func TestMalformedHashesAreRefusedAtLoad(t *testing.T) {
	for _, s := range []string{
		"", "plaintext", "md5abcdef", "SCRAM-SHA-256$4096:c2FsdA==$short:short",
		"SCRAM-SHA-256$0:c2FsdA==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"$2b$99$invalid", "$pbkdf2-sha512$x$a$b", "$argon2id$v=19$m=999999999,t=1,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=16$m=64,t=1,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
	} {
		if _, err := ParseHash(s); err == nil {
			t.Errorf("%q was accepted", s)
		} else if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("the error quotes the hash back: %v", err)
		}
	}
}

package authcore

import (
	"strings"
	"testing"
)

func TestTheConsoleStoresAVerifierAsItIsAndRefusesHashesItCannotUse(t *testing.T) {
	v := NewSCRAMVerifier("made-by-psql-1", 4096).String()
	got, err := PasswordOrVerifier(v, 8, DefaultHashLimits)
	if err != nil || got != v {
		t.Fatalf("verifier: %q %v", got, err)
	}
	if h, _ := ParseHash(got); !h.Verify("made-by-psql-1") {
		t.Fatal("the stored verifier does not verify its password")
	}
	for _, bad := range []string{
		"md5" + strings.Repeat("0", 32),
		NewSCRAMVerifier("x", DefaultHashLimits.SCRAMIterations+1).String(),
		"SCRAM-SHA-256$4096:c2FsdA==$short",
	} {
		if _, err := PasswordOrVerifier(bad, 8, DefaultHashLimits); err == nil {
			t.Errorf("%.20s... accepted", bad)
		}
	}
	if _, err := PasswordOrVerifier("short", 8, DefaultHashLimits); err == nil {
		t.Error("the length policy does not apply to a password")
	}
	// Not an MD5 hash (one digit too many, upper case): a password.
	for _, pw := range []string{"md5" + strings.Repeat("0", 33), "md5" + strings.Repeat("A", 32)} {
		h, err := PasswordOrVerifier(pw, 8, DefaultHashLimits)
		if err != nil {
			t.Fatal(err)
		}
		if parsed, _ := ParseHash(h); !parsed.Verify(pw) {
			t.Fatalf("%s not stored as a password", pw)
		}
	}
}

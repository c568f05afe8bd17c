package ascii

import "testing"

func TestOnlyASCIILettersFold(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"localhost", "LOCALHOST", true},
		{"localhost", "localhoſt", false}, // a long s
		{"k", "\u212a", false},            // the Kelvin sign
		{"On", "oN", true},
		{"é", "É", false},
		{"a", "ab", false},
	} {
		if got := EqualFold(c.a, c.b); got != c.want {
			t.Errorf("EqualFold(%q, %q) = %v", c.a, c.b, got)
		}
	}
	if got := Lower("Mixed Ünïcode Name"); got != "mixed Ünïcode name" {
		t.Errorf("Lower: %q", got)
	}
	if s := "already lower"; Lower(s) != s {
		t.Error("Lower changed a lower-case name")
	}
}

func TestLowerNamesAreLowerCaseASCIIDigitsAndUnderscores(t *testing.T) {
	for s, want := range map[string]bool{"bulk_args": true, "max_ttl2": true, "": true, "Stmt": false, "ſtmt": false, "a-b": false, "a b": false} {
		if got := IsLowerName(s); got != want {
			t.Errorf("IsLowerName(%q) = %v", s, got)
		}
	}
}

package config

import (
	"strings"
	"testing"
)

// require_auth reads as libpq reads it: methods, or methods each after
// "!"; "none" says whether a backend may let pgwarden in without asking.
func TestRequireAuthReadsAsLibpqReadsIt(t *testing.T) {
	for _, tc := range []struct {
		value   string
		allowed []string // of password, md5, scram-sha-256, none
	}{
		{"", []string{"password", "md5", "scram-sha-256", "none"}},
		{"scram-sha-256", []string{"scram-sha-256"}},
		{"scram-sha-256, none", []string{"scram-sha-256", "none"}},
		{"md5,scram-sha-256", []string{"md5", "scram-sha-256"}},
		{"!password", []string{"md5", "scram-sha-256", "none"}},
		{"!password,!md5,!none", []string{"scram-sha-256"}},
		{"!none", []string{"password", "md5", "scram-sha-256"}},
	} {
		ra, err := ParseRequireAuth(tc.value)
		if err != nil {
			t.Fatalf("%q: %v", tc.value, err)
		}
		for _, m := range []string{"password", "md5", "scram-sha-256", "none"} {
			want := false
			for _, a := range tc.allowed {
				want = want || a == m
			}
			if got := ra.Check(m) == nil; got != want {
				t.Errorf("%q: %s allowed %v, want %v", tc.value, m, got, want)
			}
		}
	}
	if err := (RequireAuth{}).Check("password"); err != nil {
		t.Fatalf("the zero RequireAuth refuses: %v", err)
	}
	ra, _ := ParseRequireAuth("scram-sha-256")
	if err := ra.Check("password"); err == nil || err.Error() != `authentication method requirement "scram-sha-256" failed: server requested password authentication` {
		t.Fatalf("the refusal reads %v", err)
	}
	for value, want := range map[string]string{
		"scram-sha-256,!md5":      "mixes",
		"scram":                   `unknown method "scram"`,
		"md5,md5":                 "twice",
		"scram-sha-256,":          `unknown method ""`,
		"SCRAM-SHA-256":           "unknown method",
		"!password,scram-sha-256": "mixes",
	} {
		if _, err := ParseRequireAuth(value); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", value, err, want)
		}
	}
}

func TestBackendRequireAuthAndChannelBindingAreCheckedAtLoad(t *testing.T) {
	for key, line := range map[string]string{
		"backend.require_auth":       `require_auth = "scram"`,
		"backend.channel_binding":    `channel_binding = "always"`,
		"backend.channel_binding is": "sslmode = \"disable\"\nchannel_binding = \"require\"",
	} {
		key = strings.TrimSuffix(key, " is")
		_, err := Parse("c.toml", []byte("[backend]\n"+line+"\n[[hba]]\nmethod = \"trust\"\n"))
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v", line, err)
		}
	}
}

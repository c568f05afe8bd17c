package hba

import (
	"strings"
	"testing"

	"github.com/pgwarden/pgwarden/config"
)

// FuzzParseFile feeds arbitrary text to the pg_hba.conf parser: no panic,
// and every accepted rule is complete.
func FuzzParseFile(f *testing.F) {
	f.Add("host all all 127.0.0.1/32 md5\n")
	f.Add("local all postgres peer\nhostssl \"a,b\" +g,/^x 10.0.0.0 255.0.0.0 cert clientcert=verify-full # c\n")
	f.Add("host all \\\n all ::1/128 trust\n")
	f.Fuzz(func(t *testing.T, s string) {
		rules, err := ParseFile("f", []byte(s), Env{TLS: true, ClientCA: true})
		if err != nil {
			return
		}
		for _, r := range rules {
			if len(r.Addresses) == 0 || len(r.Databases) == 0 || len(r.Users) == 0 || !Known(r.Method) {
				t.Fatalf("incomplete rule from %q: %+v", s, r)
			}
			// The rule printed back re-parses to the same rule.
			line := r.PgHBALine()
			again, err := ParseFile("f", []byte(line), Env{TLS: true, ClientCA: true})
			if err != nil || len(again) != 1 {
				t.Fatalf("%q printed as %q does not re-parse: %v", s, line, err)
			}
			a, b := r.Row(), again[0].Row()
			a[0], b[0], a[8], b[8] = "", "", "", ""
			if strings.Join(a, "|") != strings.Join(b, "|") {
				t.Fatalf("%q printed as %q re-parses differently:\n%v\n%v", s, line, a, b)
			}
		}
	})
}

// FuzzTOMLRules feeds arbitrary [[hba]] blocks through config parsing and
// the rule normalizer: no panic, and accepted rules are complete.
func FuzzTOMLRules(f *testing.F) {
	f.Add("[[hba]]\nmethod = \"trust\"\n")
	f.Add("[[hba]]\nprotocol = \"http\"\naddress = [\"10.0.0.0/8\", \"local\"]\nuser = [\"+g\", \"/^a\"]\nmethod = \"password\"\nclientcert = \"verify-ca\"\n")
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := config.Parse("f.toml", []byte(s))
		if err != nil {
			return
		}
		rules, err := FromConfig(cfg, Env{TLS: true, ClientCA: true, JWT: true})
		if err != nil {
			return
		}
		for _, r := range rules {
			if len(r.Addresses) == 0 || len(r.Databases) == 0 || len(r.Users) == 0 || !Known(r.Method) {
				t.Fatalf("incomplete rule from %q: %+v", s, r)
			}
		}
	})
}

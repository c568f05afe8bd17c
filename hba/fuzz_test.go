package hba

import (
	"net/netip"
	"regexp"
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
	f.Add("host all all ::ffff:127.0.0.1/8 reject\nhost all all ::ffff:10.0.0.1 ffff:ffff:ffff:ffff:ffff:ffff:ff00:0 trust\n")
	f.Add("host samerole all 10.0.0.0/8 reject\nhost all +g,x 0.0.0.0/0 trust\nlocal all +admins peer\nhost all all all scram-sha-256\n")
	f.Add("host \"/^db\\d{2,4}$\" /(?i)^adm[[:alpha:]]\\x2d\\s 10.0.0.0/8 reject\nhost all \"/***=a.b\",/^a{,2}[\\D]$ all trust\n")
	f.Fuzz(func(t *testing.T, s string) {
		rules, err := ParseFile("f", []byte(s), Env{TLS: true, ClientCA: true})
		if err != nil {
			return
		}
		for _, r := range rules {
			if len(r.Addresses) == 0 || len(r.Databases) == 0 || len(r.Users) == 0 || !Known(r.Method) || !addressesValid(r) {
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
		checkNeedsRoles(t, s, rules)
	})
}

// checkNeedsRoles holds NeedsRoles to its promise: where it says the
// roles a user holds cannot change the match, no roles change it (the gate
// reads a name's PostgreSQL memberships only where it says they can).
func checkNeedsRoles(t *testing.T, s string, rules Rules) {
	for _, local := range []bool{false, true} {
		for _, user := range []string{"alice", "g", "x"} {
			for _, db := range []string{"app", "g", "alice"} {
				req := &Request{Protocol: ProtoPG, Addr: netip.MustParseAddr("10.1.2.3"), Local: local, User: user, Database: db}
				if rules.NeedsRoles(req) {
					continue
				}
				without := rules.Match(req)
				for _, roles := range [][]string{{"g"}, {"admins", "g", "x", "alice", "app"}} {
					with := *req
					with.Roles = roles
					if got := rules.Match(&with); got != without {
						t.Fatalf("%q: NeedsRoles said roles cannot decide for %s@%s, but roles %v match another rule", s, user, db, roles)
					}
				}
			}
		}
	}
}

// FuzzTOMLRules feeds arbitrary [[hba]] blocks through config parsing and
// the rule normalizer: no panic, and accepted rules are complete.
func FuzzTOMLRules(f *testing.F) {
	f.Add("[[hba]]\nmethod = \"trust\"\n")
	f.Add("[[hba]]\naddress = [\"::ffff:127.0.0.1/8\", \"::ffff:10.0.0.0/104\"]\nmethod = \"reject\"\n")
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
			if len(r.Addresses) == 0 || len(r.Databases) == 0 || len(r.Users) == 0 || !Known(r.Method) || !addressesValid(r) {
				t.Fatalf("incomplete rule from %q: %+v", s, r)
			}
		}
	})
}

// addressesValid says whether every network of r holds addresses: an
// invalid netip.Prefix contains none, so a reject rule with one stops no
// one (an IPv4-mapped address under a prefix shorter than 96 bits made
// one until December 2026).
func addressesValid(r *Rule) bool {
	for _, a := range r.Addresses {
		if a.kind == addrPrefix && !a.prefix.IsValid() {
			return false
		}
	}
	return true
}

// FuzzRegex feeds arbitrary expressions and names to the translation of
// PostgreSQL's regular expressions into RE2 (see nameRegexp): no panic;
// where the expression only uses what both engines read alike and the
// name is ASCII, the match is RE2's own. (The integration test
// TestARegexRuleMatchesTheNamesPostgreSQLsHBAMatches compares with
// PostgreSQL itself.)
func FuzzRegex(f *testing.F) {
	for _, s := range []string{`^admin$`, `(?i)^a.c`, `\x61b`, `[[:alpha:]_-]+`, `\s\S\y`, `***=a.b`, `a{,2}`, `[^]a]|b*?`, `\012[\D]`} {
		f.Add(s, "admin")
	}
	f.Fuzz(func(t *testing.T, expr, name string) {
		re, err := compileRegex(expr)
		if err != nil {
			return
		}
		got := re.MatchString(name)
		if strings.Trim(expr, "abc^$.*+?|()") != "" || strings.Contains(expr, "(?") {
			return
		}
		for i := 0; i < len(name); i++ {
			if name[i] >= 0x80 {
				return
			}
		}
		if want, err := regexp.Compile("(?s)" + expr); err == nil && want.MatchString(name) != got {
			t.Fatalf("/%s on %q: %v, but RE2 says %v", expr, name, got, !got)
		}
	})
}

package hba

import (
	"net/netip"
	"testing"
)

// A regular expression's "." takes a newline, as PostgreSQL's does (it
// compiles without REG_NEWLINE): a name can hold one, and a reject rule
// written "/^.*helpdesk$" must stop "x\nhelpdesk" as PostgreSQL's would.
// RE2's "." stopped at the newline, so the name passed on to the rules
// below.
func TestARegexDotTakesANewlineAsPostgreSQLs(t *testing.T) {
	rs, err := ParseFile("pg_hba.conf", []byte("host all /^.*helpdesk$ all reject\nhost /^db.$ all all reject\nhost all all all trust\n"), Env{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, db string
		rule     int
	}{
		{"helpdesk", "app", 1},
		{"x\nhelpdesk", "app", 1},
		{"x\nhelpdesk\n", "app", 3}, // "$" is the end of the name, as in PostgreSQL
		{"alice", "db\n", 2},
		{"alice", "db\n\n", 3},
	} {
		m := rs.Match(&Request{Protocol: ProtoPG, Addr: netip.MustParseAddr("192.0.2.1"), User: c.user, Database: c.db})
		if m == nil || m.Number != c.rule {
			t.Errorf("user %q database %q: matched %v, want rule %d", c.user, c.db, m, c.rule)
		}
	}
}

// A rule's regular expression means what it means to PostgreSQL's HBA,
// which reads expression and name one byte per character (SQL_ASCII, C
// collation) with Spencer's engine; these are the cases where Go's RE2,
// given the expression as written, read it another way.
// (integration's TestARegexRuleMatchesTheNamesPostgreSQLsHBAMatches checks
// thousands more against PostgreSQL itself.)
func TestARegexMeansWhatItMeansToPostgreSQLsHBA(t *testing.T) {
	for _, c := range []struct {
		expr, name string
		match      bool
	}{
		{`^\x61dmin$`, "admin", false}, // \x61d is U+061D
		{`^\x61dmin$`, "\u061dmin", false},
		{`^\x2D$`, "-", true},
		{`\s`, "a\vb", true}, // RE2's \s has no vertical tab
		{`^\S+$`, "a\vb", false},
		{`^[\s]$`, "\v", true},
		{`^.$`, "é", false}, // two bytes, two characters
		{`^..$`, "é", true},
		{`^[é]$`, "é", false},
		{`^é$`, "é", true},
		{`(?i)^é$`, "É", false}, // only ASCII letters fold
		{`(?i)^admin$`, "ADMIN", true},
		{`(?i)^s$`, "\u017f", false}, // RE2 folds s and the long s
		{`(?i)^k$`, "\u212a", false}, // and k and the Kelvin sign
		{`(?i)[^a]`, "A", false},
		{`(?i)^[[:lower:]]+$`, "ADMIN", true},
		{`(?ic)^a$`, "A", false}, // the last of i and c wins
		{`(?ci)^a$`, "A", true},
		{`\badmin\b`, "admin", false}, // \b is a backspace
		{`\badmin\b`, "\badmin\b", true},
		{`^adm\Bin$`, `adm\in`, true}, // \B is a backslash
		{`\yadmin\y`, "x-admin-y", true},
		{`\Yadmin`, "xadmin", true},
		{`\Yadmin`, "admin", false},
		{`^a{,2}$`, "a{,2}", true}, // "{" not before a digit is a character
		{`^a{2}$`, "aa", true},
		{`***=a.b`, "a.b", true},
		{`***=a.b`, "axb", false},
		{`***:^a.b$`, "axb", true},
		{`^a\Z`, "a\n", false},
		{`^[\D]$`, "x", true},
		{`^[\D]$`, "1", false},
		{`^\cA$`, "\x01", true},
		{`^\012$`, "\n", true},
		{`.`, "\xff", true}, // a byte that is no UTF-8 is one character
		{`^a.b$`, "a\xffb", true},
		{`^[\x80-\xff]+$`, "é", true},
	} {
		re, err := compileRegex(c.expr)
		if err != nil {
			t.Errorf("/%s: %v", c.expr, err)
			continue
		}
		if got := re.MatchString(c.name); got != c.match {
			t.Errorf("/%s on %q: %v, want %v (as PostgreSQL's HBA)", c.expr, c.name, got, c.match)
		}
	}
}

// What RE2 cannot say exactly is refused at load, never read another way.
func TestARegexWithoutAnExactRE2FormIsRefused(t *testing.T) {
	for _, expr := range []string{
		`^a[[.hyphen.]]b$`, `[[=a=]]`, `(a)\1`, `\12`, `\madmin\M`, `[[:<:]]a`, `a(?=b)`, `a(?!b)`,
		`(?x)a b`, `(?n)^a$`, `(?m)^a$`, `(?q)a`, `(?b)a`, `a(?i)b`, `(?i:a)`, `\p{L}`, `\Q.\E`, `\z`,
		`a{256}`, `a{3,2}`, `a**`, `^*`, `(`, `)`, `[a`, `[z-a]`, `[a-c-e]`, `\`, `***x`, `\x`, `\u12`,
		`[[:word:]-z]`, `\y*`,
	} {
		if _, err := compileRegex(expr); err == nil {
			t.Errorf("/%s loaded; PostgreSQL reads it in a way RE2 cannot, or refuses it", expr)
		}
	}
}

package integration

import (
	"context"
	"fmt"
	"math/rand"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/hba"
)

// regexOracle asks PostgreSQL's own regular expression engine whether
// each name matches pattern, as pg_hba.conf would: PostgreSQL compiles an
// HBA regex in the C collation and matches it before any database is
// chosen, while the encoding is still SQL_ASCII (one character per byte),
// so the oracle is the ~ operator in a SQL_ASCII database with COLLATE
// "C". It returns nil and PostgreSQL's error when the pattern does not
// compile.
type regexOracle struct {
	conn *pgx.Conn
}

func newRegexOracle(t *testing.T) *regexOracle {
	t.Helper()
	if err := pg.Exec("CREATE DATABASE hba_regex_oracle ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=hba_regex_oracle sslmode=disable", pg.sockDir, pg.port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return &regexOracle{conn: conn}
}

func (o *regexOracle) matches(pattern string, names []string) ([]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []bool
	err := o.conn.QueryRow(ctx, `SELECT array_agg(n ~ ($1::text COLLATE "C") ORDER BY i) FROM unnest($2::text[]) WITH ORDINALITY AS t(n, i)`,
		pattern, names).Scan(&got)
	return got, err
}

// regexRules loads pattern the way a pg_hba.conf line carries it: rule 1
// rejects the names it matches, rule 2 takes the rest.
func regexRules(pattern string) (hba.Rules, error) {
	tok := "/" + pattern
	if strings.ContainsAny(tok, " \t\r,#\"") {
		tok = `"` + strings.ReplaceAll(tok, `"`, `""`) + `"`
	}
	return hba.ParseFile("pg_hba.conf", []byte("host all "+tok+" all reject\nhost all all all trust\n"), hba.Env{})
}

// regexNames are the names every pattern is tried on: ASCII letters in
// both cases, digits, punctuation the patterns use, control characters
// (a vertical tab, an escape, a newline), UTF-8 letters (é is two bytes
// to PostgreSQL's HBA) and bytes that are no UTF-8 at all.
var regexNames = []string{
	"", "a", "b", "A", "B", "ab", "aB", "Ab", "ba", "aa", "aab", "abab", "aaa", "abc", "ABC",
	"admin", "Admin", "ADMIN", "xadmin", "admin2", "ad min", "guest1", "guest1234", "db01", "db12345",
	"-", "a-b", "a.]b", "ah]b", "a[]b", "[", "]", "[a", "a]", "{", "}", "a{2}", "*", "\\", "a\\b", "a_b", "a.b", "a#b", "a b",
	"0", "1", "9", "a1", "_", "\n", "a\nb", "ab\n", "\nab", "a\tb", "a\vb", "\v", "\x01", "\x08", "\x1b", "\x7f",
	"é", "É", "aé", "éa", "ée", "\xc3", "\xe9", "\xa9", "\xff", "a\xffb", "k", "K", "\u212a", "s", "S", "\u017f", "ß", "ǅ",
	"x\nhelpdesk", "helpdesk", "\u061bmin", "؛",
}

// regexAtoms are the pieces random patterns are made of: every construct
// the two engines read differently, and plenty they read alike.
var regexAtoms = []string{
	"a", "b", "A", "-", ".", "^", "$", "*", "+", "?", "*?", "{2}", "{1,2}", "{,2}", "{2,}", "{256}", "{", "}",
	"(", ")", "(?:", "[", "]", "[^", "|", "[[:alpha:]]", "[[:digit:]]", "[[:space:]]", "[[:upper:]]", "[[:lower:]]",
	"[[:word:]]", "[[:punct:]]", "[[.hyphen.]]", "[[.-.]]", "[[=a=]]", "[[:<:]]", "[:alpha:]", "[a-c]", "[A-z]", "[z-a]",
	"[]a]", "[^]a]", "[a\\]]", "[\\d]", "[\\s]", "[\\w-]", "[\\D]", "[a-]", "[-a]", "[a-c-e]", "[é]", "[\\x41-\\x43]",
	"\\d", "\\w", "\\s", "\\D", "\\W", "\\S", "\\x61", "\\x61b", "\\x0b", "\\u0061", "\\U00000061", "\\u061b", "\\xe9",
	"\\101", "\\0", "\\1", "\\12", "\\n", "\\t", "\\v", "\\f", "\\a", "\\e", "\\b", "\\B", "\\cA", "\\c[",
	"\\A", "\\Z", "\\z", "\\m", "\\M", "\\y", "\\Y", "\\.", "\\-", "\\]", "\\[", "\\\\", "\\{", "\\Q", "\\p{L}",
	"(?i)", "(?c)", "(?ic)", "(?ci)", "(?m)", "(?n)", "(?s)", "(?x)", "(?U)", "(?i:a)", "(?=a)", "(?!a)",
	"***=", "***:", "é", "k", "s", " ", "#", "\"", ",", "admin", "\u212a",
}

// Every /regex a rule holds matches exactly the names PostgreSQL's HBA
// would match with it, byte for byte: pgwarden may refuse an expression
// PostgreSQL takes (it says so at load), but it never takes one and reads
// it another way. Until December 2026 pgwarden handed the expression to
// Go's RE2 as written, and this test found the two engines apart on
// \x61b, [[.hyphen.]], [[=a=]], \s against a vertical tab, (?i) and é, and
// "." against a two-byte character: each a rule copied from pg_hba.conf
// that would let through names PostgreSQL stops, or stop others.
func TestARegexRuleMatchesTheNamesPostgreSQLsHBAMatches(t *testing.T) {
	oracle := newRegexOracle(t)
	// What a pg_hba.conf user plausibly writes must load.
	mustLoad := []string{
		`^admin$`, `^.*helpdesk$`, `^db\d{2,4}$`, `^guest\d{1,3}$`, `(?i)^admin`, `^(alice|bob)$`,
		`^svc_[a-z0-9_]+$`, `^[^_]`, `[[:upper:]]`, `***=a.b`, `\yadmin\y`, `^a\.b$`, `^\x61dmin$`, `\s`,
		`^[-a-z]+$`, `^app(_ro|_rw)?$`, `^é`, `^.{1,3}$`, `(?i)[^a]`, `^\u0061`,
	}
	patterns := append([]string(nil), mustLoad...)
	rng := rand.New(rand.NewSource(20261206))
	seen := map[string]bool{}
	for _, p := range patterns {
		seen[p] = true
	}
	for len(patterns) < 3000 {
		var b strings.Builder
		for n := 1 + rng.Intn(4); n > 0; n-- {
			b.WriteString(regexAtoms[rng.Intn(len(regexAtoms))])
		}
		if p := b.String(); !seen[p] {
			seen[p] = true
			patterns = append(patterns, p)
		}
	}
	loaded, refusedValid := 0, 0
	for i, p := range patterns {
		rules, err := regexRules(p)
		want, pgErr := oracle.matches(p, regexNames)
		if i < len(mustLoad) && err != nil {
			t.Errorf("/%s: refused at load: %v", p, err)
			continue
		}
		if err != nil {
			if pgErr == nil {
				refusedValid++
			}
			continue
		}
		loaded++
		if pgErr != nil {
			t.Errorf("/%s: pgwarden loads it, PostgreSQL refuses it: %v", p, pgErr)
			continue
		}
		for k, name := range regexNames {
			m := rules.Match(&hba.Request{Protocol: hba.ProtoPG, Addr: netip.MustParseAddr("127.0.0.1"), User: name, Database: "app"})
			got := m != nil && m.Number == 1
			if got != want[k] {
				t.Errorf("/%s on %q: pgwarden matches %v, PostgreSQL %v", p, name, got, want[k])
			}
		}
	}
	t.Logf("%d patterns: %d loaded and matched as PostgreSQL matches them; %d that PostgreSQL takes refused at load", len(patterns), loaded, refusedValid)
	if loaded < len(patterns)/10 {
		t.Errorf("only %d of %d patterns loaded: the test no longer tries much", loaded, len(patterns))
	}
}

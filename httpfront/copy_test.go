package httpfront

import (
	"strings"
	"testing"
)

func TestCopyWithTheClientIsKnownBeforeItRuns(t *testing.T) {
	refused := map[string]string{
		"COPY t FROM STDIN":                                     "STDIN",
		"copy t from stdin with (format csv)":                   "STDIN",
		"COPY t (a, b) FROM STDIN":                              "STDIN",
		"COPY BINARY t FROM STDIN":                              "STDIN",
		"COPY t TO STDOUT":                                      "STDOUT",
		"COPY (SELECT 1 FROM t WHERE a = ')') TO STDOUT":        "STDOUT",
		"COPY (SELECT $$ ) $$ FROM t) TO STDOUT (FORMAT csv)":   "STDOUT",
		"/* c */ COPY t FROM /* d */ STDIN":                     "STDIN",
		"-- c\ncopy t to\n-- d\nstdout":                         "STDOUT",
		`COPY "stdin" FROM STDIN`:                               "STDIN",
		"COPY (SELECT E'\\')' FROM t) TO STDOUT":                "STDOUT",
		"COPY (SELECT $1 FROM (SELECT 1) s(x)) TO STDOUT":       "STDOUT",
		"COPY (SELECT $q$ ')' $q$) TO STDOUT":                   "STDOUT",
		"COPY t FROM STDIN;":                                    "STDIN",
		"COPY t FROM\tSTDIN":                                    "STDIN",
		"COPY sch.t FROM STDIN":                                 "STDIN",
		"COPY t(a) FROM STDIN WHERE a > 0":                      "STDIN",
		"COPY (WITH x AS (SELECT 1) SELECT * FROM x) TO STDOUT": "STDOUT",
	}
	for s, want := range refused {
		if got, ok := copyWithClient(s); !ok || got != want {
			t.Errorf("%q: got %q, %v; want %q refused", s, got, ok, want)
		}
	}
	allowed := []string{
		"COPY t FROM '/tmp/stdin'", "COPY t TO 'stdout'", "COPY stdin FROM '/tmp/x'", "COPY stdout TO '/tmp/x'",
		"COPY (SELECT stdin FROM t) TO '/tmp/x'", "COPY t TO PROGRAM 'cat'", "SELECT 'COPY t FROM STDIN'",
		"SELECT 1 FROM stdin", "copyx FROM STDIN", "COPY t FROM \"STDIN\"", "COPY (SELECT 1 FROM stdin) TO '/x'",
		"COPY t FROM E'stdin'", "COPY t FROM $$stdin$$", "/* unterminated COPY t FROM STDIN", "",
		"COPY t FROM 'x' -- FROM STDIN", "COPY t FROM 'x' /* TO STDOUT */",
	}
	for _, s := range allowed {
		if got, ok := copyWithClient(s); ok {
			t.Errorf("%q must be allowed, got %q", s, got)
		}
	}
}

// FuzzCopyStatement: the COPY check reads any text to its end without a
// panic, finds a COPY only where the words COPY and STDIN or STDOUT are,
// and comments or white space before a statement change nothing.
func FuzzCopyStatement(f *testing.F) {
	for _, s := range []string{"COPY t FROM STDIN", "COPY (SELECT ')' FROM x) TO STDOUT", "COPY t FROM E'\\'", "COPY $a$", "COPY $1 FROM STDIN",
		"COPY \"a\"\"b\" TO STDOUT", "COPY /* /* */ t FROM STDIN", "COPY t FROM 'x", "COPY (((( TO STDOUT", "COPY ) FROM STDIN", "COPY t FROM é STDIN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		what, ok := copyWithClient(s)
		if ok {
			up := strings.ToUpper(s)
			if !strings.Contains(up, "COPY") || !strings.Contains(up, what) {
				t.Fatalf("%q refused as COPY %s", s, what)
			}
		}
		for _, prefix := range []string{" ", "\n", "/* c */"} {
			if w2, ok2 := copyWithClient(prefix + s); ok2 != ok || w2 != what {
				t.Fatalf("%q: %q, %v; with %q before it: %q, %v", s, what, ok, prefix, w2, ok2)
			}
		}
		l := sqlLexer{s: s}
		for n := 0; ; n++ {
			if n > len(s)+1 {
				t.Fatalf("%q: the lexer does not advance", s)
			}
			if _, k := l.next(); k == tokEnd {
				break
			}
		}
	})
}

package hba

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// nameRegexp is a rule's /regex, matched as PostgreSQL's HBA matches it.
//
// PostgreSQL compiles the expression with its own engine (Spencer's
// advanced regular expressions, REG_ADVANCED) in the C collation, and it
// does so, and matches names, before any database is chosen, while the
// server's encoding is still SQL_ASCII: every byte of the expression and
// of the name is one character. So "." takes one byte of an é, [é] is a
// set of two bytes, and case-insensitive matching folds ASCII letters
// only. pgwarden runs Go's RE2 on the name's bytes taken as the runes
// U+0000 to U+00FF, over an RE2 expression that translateRegex writes from
// PostgreSQL's: a construct whose meaning it cannot carry over exactly is
// refused at load, never read another way. Until December 2026 the
// expression went to RE2 as written, and the two engines disagree on more
// than syntax: \x61b is "ab" to RE2 and one character (U+061B) to
// PostgreSQL, [[.hyphen.]] a hyphen to PostgreSQL and a set of letters and
// a "]" to RE2, \s a vertical tab to PostgreSQL only, (?i) folded é and É,
// and "." took a whole UTF-8 character. A reject rule copied from
// pg_hba.conf could then let through a name PostgreSQL stops.
type nameRegexp struct {
	re *regexp.Regexp
}

// MatchString reports whether the expression matches somewhere in name
// (unanchored, as PostgreSQL's regexec).
func (r nameRegexp) MatchString(name string) bool {
	return r.re.MatchString(bytesAsRunes(name))
}

// bytesAsRunes spells each byte of s as the rune of the same value, so
// that RE2, which reads UTF-8, sees one character per byte.
func bytesAsRunes(s string) string {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + len(s) - i)
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		b.WriteRune(rune(s[i]))
	}
	return b.String()
}

// compileRegex compiles a rule's regular expression (the text after the
// slash) as PostgreSQL reads it.
func compileRegex(expr string) (nameRegexp, error) {
	if expr == "" {
		return nameRegexp{}, fmt.Errorf("empty regular expression")
	}
	src, err := translateRegex(expr)
	if err != nil {
		return nameRegexp{}, fmt.Errorf("regular expression %q: %v", expr, err)
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nameRegexp{}, fmt.Errorf("regular expression %q: %v", expr, err)
	}
	return nameRegexp{re: re}, nil
}

// maxRepeat is PostgreSQL's DUPMAX: a bound over it is an error there.
const maxRepeat = 255

// translateRegex writes PostgreSQL's advanced regular expression expr as
// an RE2 expression over bytes-as-runes (see nameRegexp), or says which
// construct it cannot carry over. What it takes:
//
//   - directors ***: and ***= (the rest is a literal string), and leading
//     embedded options (?i), (?c), (?s), (?t) and their combinations;
//   - literals, ".", "^", "$", alternation, ( ) and (?: ) groups;
//   - quantifiers *, +, ?, {m}, {m,}, {m,n} (at most 255), each greedy or
//     not;
//   - bracket expressions with ranges, [:class:] and escapes;
//   - the escapes \d \w \s \D \W \S, \A \Z \y \Y, and the character
//     escapes \a \b \B \cX \e \f \n \r \t \v \uXXXX \UXXXXXXXX \xH... \0oo;
//   - "{" not followed by a digit, as an ordinary character.
//
// What it refuses: back-references (and so octal escapes that do not
// start with 0, which PostgreSQL reads either way), collating elements and
// equivalence classes ([.x.], [=x=]), \m, \M, [[:<:]] and [[:>:]],
// lookaround constraints, and the options that change the syntax or the
// newline handling (b, e, q, x, m, n, p, w).
func translateRegex(expr string) (string, error) {
	t := &regexTranslator{src: expr}
	t.out.WriteString("(?s)")
	switch {
	case strings.HasPrefix(expr, "***="):
		for i := 4; i < len(expr); i++ {
			t.literal(rune(expr[i]))
		}
		return t.out.String(), nil
	case strings.HasPrefix(expr, "***:"):
		t.i = 4
	case strings.HasPrefix(expr, "***"):
		return "", fmt.Errorf("unknown director %q", expr[:min(len(expr), 4)])
	}
	if err := t.options(); err != nil {
		return "", err
	}
	if err := t.alternation(); err != nil {
		return "", err
	}
	if t.i < len(t.src) {
		// Only an unbalanced ")" stops the top level early.
		return "", fmt.Errorf("parentheses () not balanced")
	}
	return t.out.String(), nil
}

type regexTranslator struct {
	src  string
	i    int
	fold bool // (?i): ASCII letters match either case
	out  strings.Builder
}

// options reads leading embedded options: (?i) and the like, allowed only
// at the very start, as in PostgreSQL.
func (t *regexTranslator) options() error {
	if !strings.HasPrefix(t.src[t.i:], "(?") || t.i+2 >= len(t.src) || !isASCIILetter(t.src[t.i+2]) {
		return nil
	}
	j := t.i + 2
	for ; j < len(t.src) && t.src[j] != ')'; j++ {
		switch c := t.src[j]; c {
		case 'i':
			t.fold = true
		case 'c':
			t.fold = false
		case 's', 't':
			// The defaults: newline is an ordinary character, tight
			// syntax.
		case 'b', 'e', 'q', 'x', 'm', 'n', 'p', 'w':
			return fmt.Errorf("embedded option %q changes the syntax or how newlines match, which pgwarden does not carry over; leave it out", string(c))
		default:
			return fmt.Errorf("invalid embedded option %q", string(c))
		}
	}
	if j == len(t.src) {
		return fmt.Errorf("embedded options not closed with )")
	}
	t.i = j + 1
	return nil
}

// alternation reads branches separated by "|" up to the end or a ")".
func (t *regexTranslator) alternation() error {
	for {
		if err := t.branch(); err != nil {
			return err
		}
		if t.i < len(t.src) && t.src[t.i] == '|' {
			t.out.WriteByte('|')
			t.i++
			continue
		}
		return nil
	}
}

// branch reads pieces up to "|", ")" or the end.
func (t *regexTranslator) branch() error {
	for t.i < len(t.src) {
		switch t.src[t.i] {
		case '|', ')':
			return nil
		}
		if err := t.piece(); err != nil {
			return err
		}
	}
	return nil
}

// piece reads an atom and its quantifier, or a constraint (which takes no
// quantifier).
func (t *regexTranslator) piece() error {
	c := t.src[t.i]
	switch c {
	case '^', '$':
		t.out.WriteByte(c)
		t.i++
		return t.noQuantifier()
	case '*', '+', '?':
		return fmt.Errorf("quantifier operand invalid at %q", t.src[t.i:])
	case '{':
		if t.boundAhead() {
			return fmt.Errorf("quantifier operand invalid at %q", t.src[t.i:])
		}
		// "{" not followed by a digit is an ordinary character in
		// PostgreSQL.
		t.literal('{')
		t.i++
	case '(':
		t.i++
		if strings.HasPrefix(t.src[t.i:], "?:") {
			t.i += 2
			t.out.WriteString("(?:")
		} else if t.i < len(t.src) && t.src[t.i] == '?' {
			return fmt.Errorf("%q: lookaround constraints and embedded options after the start have no RE2 equivalent", "(?"+t.src[t.i+1:min(len(t.src), t.i+3)])
		} else {
			t.out.WriteByte('(')
		}
		if err := t.alternation(); err != nil {
			return err
		}
		if t.i == len(t.src) || t.src[t.i] != ')' {
			return fmt.Errorf("parentheses () not balanced")
		}
		t.out.WriteByte(')')
		t.i++
	case '.':
		t.out.WriteByte('.')
		t.i++
	case '[':
		t.i++
		if err := t.bracket(); err != nil {
			return err
		}
	case '\\':
		constraint, err := t.escape()
		if err != nil {
			return err
		}
		if constraint {
			return t.noQuantifier()
		}
	default:
		t.literal(rune(c))
		t.i++
	}
	return t.quantifier()
}

// boundAhead says whether t.i is at a "{" that starts a bound: one
// followed by a digit.
func (t *regexTranslator) boundAhead() bool {
	return t.i+1 < len(t.src) && t.src[t.i] == '{' && t.src[t.i+1] >= '0' && t.src[t.i+1] <= '9'
}

// quantifierAhead says whether t.i is at a quantifier.
func (t *regexTranslator) quantifierAhead() bool {
	if t.i == len(t.src) {
		return false
	}
	switch t.src[t.i] {
	case '*', '+', '?':
		return true
	}
	return t.boundAhead()
}

func (t *regexTranslator) noQuantifier() error {
	if t.quantifierAhead() {
		return fmt.Errorf("a constraint cannot take a quantifier (at %q)", t.src[t.i:])
	}
	return nil
}

// quantifier reads an optional quantifier after an atom.
func (t *regexTranslator) quantifier() error {
	if !t.quantifierAhead() {
		return nil
	}
	switch c := t.src[t.i]; c {
	case '*', '+', '?':
		t.out.WriteByte(c)
		t.i++
	case '{':
		end := strings.IndexByte(t.src[t.i:], '}')
		if end < 0 {
			return fmt.Errorf("braces {} not balanced")
		}
		bound := t.src[t.i+1 : t.i+end]
		lo, hi, comma := strings.Cut(bound, ",")
		m, err := repeatCount(lo)
		if err != nil {
			return fmt.Errorf("invalid repetition count {%s}", bound)
		}
		if comma && hi != "" {
			n, err := repeatCount(hi)
			if err != nil || n < m {
				return fmt.Errorf("invalid repetition count {%s}", bound)
			}
		}
		t.out.WriteString(t.src[t.i : t.i+end+1])
		t.i += end + 1
	}
	if t.i < len(t.src) && t.src[t.i] == '?' {
		// Non-greedy: the same names match.
		t.out.WriteByte('?')
		t.i++
	}
	if t.quantifierAhead() {
		return fmt.Errorf("quantifier operand invalid at %q", t.src[t.i:])
	}
	return nil
}

func repeatCount(s string) (int, error) {
	if s == "" || len(s) > 3 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("bad count")
	}
	n, _ := strconv.Atoi(s)
	if n > maxRepeat {
		return 0, fmt.Errorf("count over %d", maxRepeat)
	}
	return n, nil
}

// escape reads a backslash escape outside brackets, reporting whether it
// was a constraint (\A, \Z, \y, \Y).
func (t *regexTranslator) escape() (constraint bool, err error) {
	t.i++ // the backslash
	if t.i == len(t.src) {
		return false, fmt.Errorf("trailing backslash")
	}
	c := t.src[t.i]
	switch c {
	case 'A':
		t.out.WriteString(`\A`)
	case 'Z':
		t.out.WriteString(`\z`)
	case 'y':
		// Word characters are ASCII letters, digits and "_" in both
		// engines (PostgreSQL's C collation, RE2's \b).
		t.out.WriteString(`\b`)
	case 'Y':
		t.out.WriteString(`\B`)
	case 'm', 'M':
		return false, fmt.Errorf(`\%c (the start or end of a word) has no RE2 equivalent: use \y`, c)
	case 'd', 'w', 's', 'D', 'W', 'S':
		t.i++
		set := classEscape(c)
		t.writeSet(set, c >= 'A' && c <= 'Z')
		return false, nil
	default:
		r, err := t.charEscape()
		if err != nil {
			return false, err
		}
		t.literal(r)
		return false, nil
	}
	t.i++
	return true, nil
}

// charEscape reads a character-entry escape (t.i at the letter after the
// backslash) or an escaped non-alphanumeric character, which stands for
// itself.
func (t *regexTranslator) charEscape() (rune, error) {
	c := t.src[t.i]
	t.i++
	switch c {
	case 'a':
		return '\a', nil
	case 'b':
		return '\b', nil // a backspace, not RE2's word boundary
	case 'B':
		return '\\', nil
	case 'e':
		return 0x1b, nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'v':
		return '\v', nil
	case 'c':
		if t.i == len(t.src) {
			return 0, fmt.Errorf(`\c needs a character after it`)
		}
		r := rune(t.src[t.i]) & 0x1f
		t.i++
		return r, nil
	case 'u', 'U', 'x':
		n := map[byte]int{'u': 4, 'U': 8, 'x': 8}[c]
		j := t.i
		for j < len(t.src) && j-t.i < n && isHexDigit(t.src[j]) {
			j++
		}
		digits := t.src[t.i:j]
		if digits == "" || (c != 'x' && len(digits) != n) {
			return 0, fmt.Errorf(`invalid escape \%c%s`, c, digits)
		}
		if c == 'x' && j < len(t.src) && isHexDigit(t.src[j]) {
			// PostgreSQL reads every hex digit that follows \x.
			return 0, fmt.Errorf(`\x followed by more than 8 hex digits`)
		}
		v, _ := strconv.ParseUint(digits, 16, 32)
		if v > utf8.MaxRune {
			return 0, fmt.Errorf(`invalid escape \%c%s: beyond the last character`, c, digits)
		}
		t.i = j
		return rune(v), nil
	}
	switch {
	case c == '0':
		// Always octal, up to three digits in all.
		v := rune(0)
		for n := 1; n < 3 && t.i < len(t.src) && t.src[t.i] >= '0' && t.src[t.i] <= '7'; n++ {
			v = v*8 + rune(t.src[t.i]-'0')
			t.i++
		}
		return v, nil
	case c >= '1' && c <= '9':
		return 0, fmt.Errorf(`\%c: back-references (and octal escapes that do not start with 0) are not supported`, c)
	case isASCIILetter(c):
		return 0, fmt.Errorf(`invalid escape \%c`, c)
	}
	return rune(c), nil
}

// literal writes one character of the expression (a byte's value, or an
// escape's code).
func (t *regexTranslator) literal(r rune) {
	if t.fold && r < utf8.RuneSelf && isASCIILetter(byte(r)) {
		t.writeSet(foldASCII([]runeRange{{r, r}}), false)
		return
	}
	if r < utf8.RuneSelf {
		t.out.WriteString(regexp.QuoteMeta(string(r)))
		return
	}
	fmt.Fprintf(&t.out, `\x{%x}`, r)
}

// runeRange is an inclusive range of characters of a bracket expression.
type runeRange struct{ lo, hi rune }

// asciiClasses are the [:name:] classes both engines know, as PostgreSQL's
// C collation has them (ASCII only, as are RE2's).
var asciiClasses = map[string][]runeRange{
	"alnum":  {{'0', '9'}, {'A', 'Z'}, {'a', 'z'}},
	"alpha":  {{'A', 'Z'}, {'a', 'z'}},
	"ascii":  {{0, 0x7f}},
	"blank":  {{'\t', '\t'}, {' ', ' '}},
	"cntrl":  {{0, 0x1f}, {0x7f, 0x7f}},
	"digit":  {{'0', '9'}},
	"graph":  {{'!', '~'}},
	"lower":  {{'a', 'z'}},
	"print":  {{' ', '~'}},
	"punct":  {{'!', '/'}, {':', '@'}, {'[', '`'}, {'{', '~'}},
	"space":  {{'\t', '\r'}, {' ', ' '}},
	"upper":  {{'A', 'Z'}},
	"word":   {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}},
	"xdigit": {{'0', '9'}, {'A', 'F'}, {'a', 'f'}},
}

// classEscape is the set of \d, \w or \s (of either case: the caller
// negates the capital ones). PostgreSQL's \s is [[:space:]], which holds
// the vertical tab that RE2's \s leaves out.
func classEscape(c byte) []runeRange {
	switch c | 0x20 {
	case 'd':
		return asciiClasses["digit"]
	case 'w':
		return asciiClasses["word"]
	}
	return asciiClasses["space"]
}

// bracket reads a bracket expression (t.i after its "[").
func (t *regexTranslator) bracket() error {
	neg := false
	if t.i < len(t.src) && t.src[t.i] == '^' {
		neg = true
		t.i++
	}
	var set []runeRange
	first := true
	for {
		if t.i == len(t.src) {
			return fmt.Errorf("brackets [] not balanced")
		}
		c := t.src[t.i]
		if c == ']' && !first {
			t.i++
			break
		}
		if c == '[' && t.i+1 < len(t.src) && strings.IndexByte(".=:", t.src[t.i+1]) >= 0 {
			kind := t.src[t.i+1]
			if kind != ':' {
				what := map[byte]string{'.': "collating elements ([.x.])", '=': "equivalence classes ([=x=])"}[kind]
				return fmt.Errorf("%s are not supported: write the character itself", what)
			}
			end := strings.Index(t.src[t.i+2:], ":]")
			if end < 0 {
				return fmt.Errorf("brackets [] not balanced")
			}
			name := t.src[t.i+2 : t.i+2+end]
			cls, ok := asciiClasses[name]
			if name == "<" || name == ">" {
				return fmt.Errorf("[[:%s:]] (the start or end of a word) has no RE2 equivalent: use \\y", name)
			}
			if !ok {
				return fmt.Errorf("invalid character class [:%s:]", name)
			}
			set = append(set, cls...)
			t.i += 2 + end + 2
			if t.i < len(t.src) && t.src[t.i] == '-' && t.i+1 < len(t.src) && t.src[t.i+1] != ']' {
				return fmt.Errorf("a character class cannot start a range")
			}
			first = false
			continue
		}
		if c == '\\' && t.i+1 < len(t.src) && strings.IndexByte("dwsDWS", t.src[t.i+1]) >= 0 {
			e := t.src[t.i+1]
			if e < 'a' {
				set = append(set, complement(classEscape(e))...)
			} else {
				set = append(set, classEscape(e)...)
			}
			t.i += 2
			first = false
			continue
		}
		lo, err := t.bracketChar(first)
		if err != nil {
			return err
		}
		first = false
		hi := lo
		if t.i+1 < len(t.src) && t.src[t.i] == '-' && t.src[t.i+1] != ']' {
			t.i++
			if t.src[t.i] == '[' && t.i+1 < len(t.src) && strings.IndexByte(".=:", t.src[t.i+1]) >= 0 {
				return fmt.Errorf("a range cannot end in a class, collating element or equivalence class")
			}
			if hi, err = t.bracketChar(false); err != nil {
				return err
			}
			if hi < lo {
				return fmt.Errorf("invalid character range")
			}
			if t.i+1 < len(t.src) && t.src[t.i] == '-' && t.src[t.i+1] != ']' {
				return fmt.Errorf("a range cannot start where another ends (write the hyphen first or last)")
			}
		}
		set = append(set, runeRange{lo, hi})
	}
	if t.fold {
		set = foldASCII(set)
	}
	t.writeSet(set, neg)
	return nil
}

// bracketChar reads one character of a bracket expression: an escape or
// a byte. A hyphen is a character only first or last.
func (t *regexTranslator) bracketChar(first bool) (rune, error) {
	c := t.src[t.i]
	if c == '\\' {
		t.i++
		if t.i == len(t.src) {
			return 0, fmt.Errorf("brackets [] not balanced")
		}
		return t.charEscape()
	}
	if c == '-' && !first && t.i+1 < len(t.src) && t.src[t.i+1] != ']' {
		return 0, fmt.Errorf("a hyphen inside brackets must come first or last, or be escaped")
	}
	t.i++
	return rune(c), nil
}

// complement is every character outside set, which is sorted and holds
// no overlapping ranges.
func complement(set []runeRange) []runeRange {
	var out []runeRange
	next := rune(0)
	for _, r := range set {
		if r.lo > next {
			out = append(out, runeRange{next, r.lo - 1})
		}
		next = r.hi + 1
	}
	if next <= utf8.MaxRune {
		out = append(out, runeRange{next, utf8.MaxRune})
	}
	return out
}

// foldASCII adds the other case of every ASCII letter in set: PostgreSQL's
// case-insensitive matching in the C collation folds those alone.
func foldASCII(set []runeRange) []runeRange {
	out := append([]runeRange(nil), set...)
	for _, r := range set {
		for c := max(r.lo, 'A'); c <= min(r.hi, 'z'); c++ {
			switch {
			case c >= 'A' && c <= 'Z':
				out = append(out, runeRange{c + 32, c + 32})
			case c >= 'a' && c <= 'z':
				out = append(out, runeRange{c - 32, c - 32})
			}
		}
	}
	return out
}

// writeSet writes set as an RE2 bracket expression of explicit codes.
func (t *regexTranslator) writeSet(set []runeRange, neg bool) {
	t.out.WriteByte('[')
	if neg {
		t.out.WriteByte('^')
	}
	for _, r := range set {
		if r.lo == r.hi {
			fmt.Fprintf(&t.out, `\x{%x}`, r.lo)
		} else {
			fmt.Fprintf(&t.out, `\x{%x}-\x{%x}`, r.lo, r.hi)
		}
	}
	t.out.WriteByte(']')
}

func isASCIILetter(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || (c|0x20) >= 'a' && (c|0x20) <= 'f'
}

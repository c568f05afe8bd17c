package backend

import "unicode/utf8"

// maxIdentifierLen is PostgreSQL's NAMEDATALEN-1: longer identifiers are
// truncated, so database names are compared on their first 63 bytes.
const maxIdentifierLen = 63

// maxDDLNames bounds the names one message can ask to release.
const maxDDLNames = 16

// DatabaseDDLDetector watches SQL text, fed in pieces as it passes, for the
// statements PostgreSQL refuses while other sessions are connected to a
// database: DROP DATABASE, ALTER DATABASE (RENAME, SET TABLESPACE) and
// CREATE DATABASE (its TEMPLATE). A backend parked for reuse is such a
// session, although no client uses it: without this, a test suite that
// creates a database, uses it and drops it fails with 55006 "database is
// being accessed by other users". When a message holds such a statement,
// End returns every name that follows the statement's DATABASE keyword up
// to its end (the database, a template, and keywords such as IF EXISTS or
// WITH, which name no database and cost nothing), and the caller closes
// the idle backends of those databases. PostgreSQL waits up to 5 seconds
// for other sessions to leave, so the close need not come first.
//
// It errs towards finding: a statement text it misreads only closes idle
// backends early. String literals and comments are skipped; a statement a
// comment splits (DROP /* x */ DATABASE) is still found.
type DatabaseDDLDetector struct {
	state   ddlState
	word    [maxIdentifierLen + 1]byte // one more, to clip at a character boundary
	wordLen int
	inWord  bool
	quoted  bool // the current word is a quoted identifier
	depth   int  // nesting of /* */ comments

	afterVerb bool // the last word was DROP, ALTER or CREATE
	inDDL     bool // DATABASE followed a verb in this statement
	names     []string
}

type ddlState uint8

const (
	ddlNormal       ddlState = iota
	ddlQuoted                // inside "..."
	ddlQuoteEnd              // a " inside "...": the end, or the first of ""
	ddlString                // inside '...'
	ddlStringEnd             // a ' inside '...': the end, or the first of ''
	ddlDash                  // a - that may start a -- comment
	ddlLineComment           // inside -- ... newline
	ddlSlash                 // a / that may start a /* comment
	ddlBlockComment          // inside /* ... */
	ddlBlockStar             // a * inside a comment, that may end it
	ddlBlockSlash            // a / inside a comment, that may start a nested one
)

// Start begins a new message.
func (d *DatabaseDDLDetector) Start() {
	names := d.names[:0]
	*d = DatabaseDDLDetector{names: names}
}

// Feed scans the next piece of a message.
func (d *DatabaseDDLDetector) Feed(b []byte) {
	for _, c := range b {
		// The common bytes, name characters outside quotes and comments,
		// take the short way: the relay reads every query's text.
		if d.state == ddlNormal && nameByte[c] {
			if d.wordLen < len(d.word) {
				d.word[d.wordLen] = lowerASCII[c]
				d.wordLen++
			}
			d.inWord = true
			continue
		}
		d.feedByte(c)
	}
}

// nameByte marks the bytes that continue an unquoted name; lowerASCII
// folds A-Z as PostgreSQL folds unquoted names.
var nameByte, lowerASCII = func() (n [256]bool, l [256]byte) {
	for i := range 256 {
		c := byte(i)
		l[i] = c
		if 'A' <= c && c <= 'Z' {
			l[i] = c + 'a' - 'A'
		}
		n[i] = 'a' <= l[i] && l[i] <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '$' || c >= 0x80
	}
	return
}()

func (d *DatabaseDDLDetector) feedByte(c byte) {
	switch d.state {
	case ddlQuoted:
		if c == '"' {
			d.state = ddlQuoteEnd
		} else {
			d.addByte(c)
		}
		return
	case ddlQuoteEnd:
		if c == '"' {
			d.addByte('"')
			d.state = ddlQuoted
			return
		}
		d.state = ddlNormal
		d.endWord()
	case ddlString:
		if c == '\'' {
			d.state = ddlStringEnd
		}
		return
	case ddlStringEnd:
		if c == '\'' {
			d.state = ddlString
			return
		}
		d.state = ddlNormal
	case ddlDash:
		d.state = ddlNormal
		if c == '-' {
			d.state = ddlLineComment
			return
		}
	case ddlLineComment:
		if c == '\n' || c == '\r' || c == 0 {
			d.state = ddlNormal
		}
		return
	case ddlSlash:
		d.state = ddlNormal
		if c == '*' {
			d.state, d.depth = ddlBlockComment, 1
			return
		}
	case ddlBlockComment, ddlBlockStar, ddlBlockSlash:
		prev := d.state
		d.state = ddlBlockComment
		switch {
		case prev == ddlBlockStar && c == '/':
			d.depth--
			if d.depth == 0 {
				d.state = ddlNormal
			}
		case prev == ddlBlockSlash && c == '*':
			d.depth++
		case c == '*':
			d.state = ddlBlockStar
		case c == '/':
			d.state = ddlBlockSlash
		}
		return
	}
	// ddlNormal
	if nameByte[c] {
		d.addByte(lowerASCII[c])
		return
	}
	d.endWord()
	switch c {
	case '"':
		d.quoted, d.inWord = true, true
		d.state = ddlQuoted
	case '\'':
		d.state = ddlString
	case '-':
		d.state = ddlDash
	case '/':
		d.state = ddlSlash
	case ';', 0:
		// The statement ends (a NUL ends a message's SQL text).
		d.afterVerb, d.inDDL = false, false
		if c == 0 {
			d.state = ddlNormal
		}
	}
}

func (d *DatabaseDDLDetector) addByte(c byte) {
	d.inWord = true
	if d.wordLen < len(d.word) {
		d.word[d.wordLen] = c
		d.wordLen++
	}
}

func (d *DatabaseDDLDetector) endWord() {
	if !d.inWord {
		return
	}
	w := d.word[:clipIdentifier(d.word[:d.wordLen])]
	quoted := d.quoted
	d.wordLen, d.inWord, d.quoted = 0, false, false
	switch {
	case d.inDDL:
		if len(d.names) < maxDDLNames && len(w) > 0 {
			d.names = append(d.names, string(w))
		}
	case quoted:
		d.afterVerb = false
	case d.afterVerb && string(w) == "database":
		d.inDDL = true
		d.afterVerb = false
	default:
		d.afterVerb = isDDLVerb(w)
	}
}

// isDDLVerb reports whether w is DROP, ALTER or CREATE (lower-cased).
// A switch on string(w) compares without converting.
func isDDLVerb(w []byte) bool {
	switch string(w) {
	case "drop", "alter", "create":
		return true
	}
	return false
}

// End finishes the message and returns the names it asks to release (nil
// when it holds no database statement). The slice is valid until Start.
func (d *DatabaseDDLDetector) End() []string {
	if d.state == ddlQuoted || d.state == ddlQuoteEnd {
		d.state = ddlNormal
	}
	if d.state == ddlNormal {
		d.endWord()
	}
	if len(d.names) == 0 {
		return nil
	}
	return d.names
}

// DatabasesNamedByDDL returns the names a database statement in sql asks
// to release (see DatabaseDDLDetector), or nil.
func DatabasesNamedByDDL(sql string) []string {
	var d DatabaseDDLDetector
	d.Feed([]byte(sql))
	return d.End()
}

// clipIdentifier is the length PostgreSQL keeps of an identifier: at most
// 63 bytes, cut at a character boundary (pg_mbcliplen in UTF-8).
func clipIdentifier(b []byte) int {
	if len(b) <= maxIdentifierLen {
		return len(b)
	}
	n := maxIdentifierLen
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return n
}

// sameDatabase reports whether a database name a statement gave (already
// clipped) names the database db.
func sameDatabase(stmtName, db string) bool {
	return stmtName == clippedName(db)
}

// clippedName is the name PostgreSQL would know database db by.
func clippedName(db string) string {
	return db[:clipIdentifier([]byte(db))]
}

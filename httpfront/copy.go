package httpfront

import (
	"net/http"
	"strings"
)

// copyWithClient reports whether stmt is a COPY whose data would travel
// between PostgreSQL and the client (FROM STDIN, TO STDOUT), and says
// which. Over HTTP there is no one to send or take that data: PostgreSQL
// would wait for rows that never come (until http.statement_timeout, with a
// backend held), or send rows that pgx drops, answering 200 with none. So
// such a statement is refused before it runs. Only a top-level statement
// can be such a COPY (PL/pgSQL refuses COPY to or from the client), and a
// request statement is one statement, so its first word decides; then the
// file name, the word after FROM or TO outside any parentheses, must be the
// keyword STDIN or STDOUT ('stdin' quoted is a server file of that name).
func copyWithClient(stmt string) (string, bool) {
	w := leadingWords(stmt, 1)
	if len(w) == 0 || w[0] != "copy" {
		return "", false
	}
	l := sqlLexer{s: stmt}
	depth := 0
	afterFromTo := false
	for {
		tok, kind := l.next()
		switch kind {
		case tokEnd:
			return "", false
		case tokPunct:
			switch tok {
			case "(":
				depth++
			case ")":
				depth--
			}
			afterFromTo = false
		case tokWord:
			word := strings.ToLower(tok)
			if afterFromTo && (word == "stdin" || word == "stdout") {
				return strings.ToUpper(word), true
			}
			afterFromTo = depth == 0 && (word == "from" || word == "to")
		default:
			afterFromTo = false
		}
	}
}

// refusedBeforeRunning is the refusal of a statement that cannot work in
// its request, known from its text before it runs: a COPY with the client
// in any request, and, in a transaction or bulk request (inTransaction),
// one that would end the transaction pgwarden opened for it.
func refusedBeforeRunning(stmt string, inTransaction bool) *sqlError {
	if inTransaction {
		if what, ends := txEndingStatement(stmt); ends {
			return txEnded(what)
		}
	}
	if what, ok := copyWithClient(stmt); ok {
		return copyRefused(what)
	}
	return nil
}

// copyRefused is the answer to a COPY with the client: feature not
// supported, with what to do instead.
func copyRefused(what string) *sqlError {
	return &sqlError{status: http.StatusBadRequest, code: codeFeatureNotSupported,
		msg: "COPY " + map[string]string{"STDIN": "FROM STDIN", "STDOUT": "TO STDOUT"}[what] +
			" is not supported over HTTP: there is no client stream to copy through; send INSERT statements (\"bulk_args\"), SELECT the rows, or use the Postgres wire protocol (psql's \\copy)"}
}

type tokenKind int

const (
	tokEnd   tokenKind = iota
	tokWord            // a bare word: keyword or unquoted identifier
	tokPunct           // one character of punctuation
	tokOther           // a string, quoted identifier, number or parameter
)

// sqlLexer splits SQL text into the tokens copyWithClient needs: bare
// words, punctuation and opaque quoted pieces, skipping white space and
// comments. Quoted text ('...', E'...', $tag$...$tag$, "...") is one token,
// so a parenthesis or keyword inside it counts for nothing. An unterminated
// quote or comment ends the text.
type sqlLexer struct {
	s string
	i int
}

func (l *sqlLexer) next() (string, tokenKind) {
	s := l.s
	for l.i < len(s) {
		c := s[l.i]
		start := l.i
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			l.i++
		case strings.HasPrefix(s[l.i:], "--"):
			nl := strings.IndexByte(s[l.i:], '\n')
			if nl < 0 {
				l.i = len(s)
			} else {
				l.i += nl + 1
			}
		case strings.HasPrefix(s[l.i:], "/*"):
			depth := 0
			for l.i < len(s) {
				if strings.HasPrefix(s[l.i:], "/*") {
					depth++
					l.i += 2
				} else if strings.HasPrefix(s[l.i:], "*/") {
					depth--
					l.i += 2
					if depth == 0 {
						break
					}
				} else {
					l.i++
				}
			}
		case c == '\'':
			l.quoted('\'', false)
			return s[start:l.i], tokOther
		case c == '"':
			l.quoted('"', false)
			return s[start:l.i], tokOther
		case (c == 'e' || c == 'E') && l.i+1 < len(s) && s[l.i+1] == '\'':
			l.i++
			l.quoted('\'', true)
			return s[start:l.i], tokOther
		case c == '$':
			// $1 is a parameter; $$ or $tag$ opens a dollar quote.
			j := l.i + 1
			for j < len(s) && (isWordByte(s[j]) && !(j == l.i+1 && '0' <= s[j] && s[j] <= '9')) {
				j++
			}
			if j < len(s) && s[j] == '$' {
				tag := s[l.i : j+1]
				end := strings.Index(s[j+1:], tag)
				if end < 0 {
					l.i = len(s)
				} else {
					l.i = j + 1 + end + len(tag)
				}
				return s[start:l.i], tokOther
			}
			l.i++
			for l.i < len(s) && '0' <= s[l.i] && s[l.i] <= '9' {
				l.i++
			}
			return s[start:l.i], tokOther
		case isWordByte(c) || c >= 0x80:
			for l.i < len(s) && (isWordByte(s[l.i]) || s[l.i] == '$' || s[l.i] >= 0x80) {
				l.i++
			}
			if '0' <= c && c <= '9' {
				return s[start:l.i], tokOther
			}
			return s[start:l.i], tokWord
		default:
			l.i++
			return s[start:l.i], tokPunct
		}
	}
	return "", tokEnd
}

// quoted moves past a quoted piece that opens at l.i: a doubled quote
// stays inside, and so does a backslash-escaped one in an E” string.
func (l *sqlLexer) quoted(q byte, backslash bool) {
	s := l.s
	l.i++
	for l.i < len(s) {
		switch {
		case backslash && s[l.i] == '\\':
			l.i += 2
		case s[l.i] == q && l.i+1 < len(s) && s[l.i+1] == q:
			l.i += 2
		case s[l.i] == q:
			l.i++
			return
		default:
			l.i++
		}
	}
	l.i = len(s)
}

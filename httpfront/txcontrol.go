package httpfront

import (
	"net/http"
	"strings"
)

// txEndingStatement reports whether stmt, run inside a "transaction" or
// "bulk_args" request, would end or leave the transaction pgwarden opened
// for it, and names its keyword. It must be known before the statement runs:
// the transaction status the backend reports afterwards (checked too) comes
// only once a COMMIT has already committed the statements before it. Only
// transaction-control statements can end a transaction block (a procedure
// or DO block that tries is refused by PostgreSQL inside one, and PREPARE
// cannot prepare them), and each request statement is one statement (the
// extended protocol), so its first keywords decide: COMMIT, END, ABORT,
// ROLLBACK (but not ROLLBACK TO a savepoint, which stays inside), and
// PREPARE TRANSACTION. Comments and white space before them are skipped.
func txEndingStatement(stmt string) (string, bool) {
	words := leadingWords(stmt, 3)
	if len(words) == 0 {
		return "", false
	}
	switch words[0] {
	case "commit", "end", "abort":
		return strings.ToUpper(words[0]), true
	case "rollback":
		// ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name stays inside.
		rest := words[1:]
		if len(rest) > 0 && (rest[0] == "work" || rest[0] == "transaction") {
			rest = rest[1:]
		}
		if len(rest) > 0 && rest[0] == "to" {
			return "", false
		}
		return "ROLLBACK", true
	case "prepare":
		if len(words) > 1 && words[1] == "transaction" {
			return "PREPARE TRANSACTION", true
		}
	}
	return "", false
}

// leadingWords returns up to n lower-cased words at the start of an SQL
// statement, skipping white space, -- comments and nested /* */ comments.
// It stops at anything that is not a plain word.
func leadingWords(s string, n int) []string {
	var words []string
	i := 0
	for i < len(s) && len(words) < n {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case strings.HasPrefix(s[i:], "--"):
			nl := strings.IndexByte(s[i:], '\n')
			if nl < 0 {
				return words
			}
			i += nl + 1
		case strings.HasPrefix(s[i:], "/*"):
			depth := 0
			for i < len(s) {
				if strings.HasPrefix(s[i:], "/*") {
					depth++
					i += 2
				} else if strings.HasPrefix(s[i:], "*/") {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
			if depth != 0 {
				return words
			}
		case isWordByte(c):
			start := i
			for i < len(s) && isWordByte(s[i]) {
				i++
			}
			words = append(words, strings.ToLower(s[start:i]))
		default:
			return words
		}
	}
	return words
}

func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || '0' <= c && c <= '9'
}

// txEnded is the refusal of a statement that would end, or did leave, the
// request's transaction; everything the request did is rolled back.
func txEnded(what string) *sqlError {
	return &sqlError{status: http.StatusBadRequest, code: codeActiveSQLTransaction,
		msg: what + " would end the request's transaction; statements in \"transaction\" and \"bulk_args\" run in one transaction that pgwarden ends, and all of them were rolled back"}
}

package httpfront

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// errAnswerTooLarge: appending a value took the answer past its limit.
var errAnswerTooLarge = errors.New("the answer is larger than its limit")

// errNotUTF8: a value holds bytes that are not UTF-8. Only a database whose
// encoding is SQL_ASCII (no conversion, no check) or a session that changed
// client_encoding gives them; JSON cannot carry them, and encoding/json
// would write each as \ufffd, so a value read and written back would be
// stored changed. The answer is refused instead.
var errNotUTF8 = errors.New("a value is not valid UTF-8")

// valueBytes is the least a large value takes in the answer: its bytes
// (base64 for bytea); 0 for the values whose JSON is short.
func valueBytes(v any) int {
	switch x := v.(type) {
	case string:
		return len(x)
	case jsonText:
		return len(x)
	case []byte:
		return base64.StdEncoding.EncodedLen(len(x))
	}
	return 0
}

// appendJSON appends v, one of the values encodeValue gives, as
// encoding/json would write it (HTML-safe strings, sorted object keys,
// base64 bytes), and fails with errAnswerTooLarge as soon as b grows past
// limit. Rows are written this way as they are read, so
// http.max_result_bytes bounds the bytes of the answer itself: a string of
// control characters is six times longer in JSON than in PostgreSQL, and
// the answer must be refused before it is built, not after. A string or
// json value that is not UTF-8 fails with errNotUTF8, where encoding/json
// would have replaced its bytes.
func appendJSON(b []byte, v any, limit int) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		b = append(b, "null"...)
	case bool:
		b = strconv.AppendBool(b, x)
	case string:
		return appendJSONString(b, x, limit)
	case int8:
		b = strconv.AppendInt(b, int64(x), 10)
	case int16:
		b = strconv.AppendInt(b, int64(x), 10)
	case int32:
		b = strconv.AppendInt(b, int64(x), 10)
	case int64:
		b = strconv.AppendInt(b, x, 10)
	case int:
		b = strconv.AppendInt(b, int64(x), 10)
	case uint8:
		b = strconv.AppendUint(b, uint64(x), 10)
	case uint16:
		b = strconv.AppendUint(b, uint64(x), 10)
	case uint32:
		b = strconv.AppendUint(b, uint64(x), 10)
	case uint64:
		b = strconv.AppendUint(b, x, 10)
	case float32:
		b = appendJSONFloat(b, float64(x), 32)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			// JSON has no number for them: PostgreSQL's spelling.
			return appendJSONString(b, encodeFloat(x).(string), limit)
		}
		b = appendJSONFloat(b, x, 64)
	case []byte:
		if len(b)+base64.StdEncoding.EncodedLen(len(x))+2 > limit {
			return b, errAnswerTooLarge
		}
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, x)
		b = append(b, '"')
	case json.RawMessage:
		b = append(b, x...) // numericText: digits, a sign and a point
	case jsonText:
		if len(b)+len(x) > limit {
			return b, errAnswerTooLarge // compacting never lengthens
		}
		if !utf8.Valid(x) {
			return b, errNotUTF8 // json.Compact would copy the bytes as they are
		}
		buf := bytes.NewBuffer(b)
		if err := json.Compact(buf, x); err != nil {
			// Not JSON after all (PostgreSQL validates json and jsonb,
			// so this is a last line): its text, as a string.
			return appendJSONString(b, string(x), limit)
		}
		b = buf.Bytes()
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSON(b, e, limit); err != nil {
				return b, err
			}
		}
		b = append(b, ']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSONString(b, k, limit); err != nil {
				return b, err
			}
			b = append(b, ':')
			if b, err = appendJSON(b, x[k], limit); err != nil {
				return b, err
			}
		}
		b = append(b, '}')
	default:
		// Nothing encodeValue gives comes here; encoding/json stays the
		// reference for whatever might.
		enc, err := json.Marshal(x)
		if err != nil {
			return b, err
		}
		b = append(b, enc...)
	}
	if len(b) > limit {
		return b, errAnswerTooLarge
	}
	return b, nil
}

// jsonText is a json or jsonb value as PostgreSQL wrote it, embedded in the
// answer compacted but otherwise unchanged: numbers keep every digit, a
// json object its key order and duplicate keys.
type jsonText []byte

// appendJSONFloat is encoding/json's form of a float of bits 32 or 64:
// that size's shortest digits, with an exponent only below 1e-6 or from
// 1e21, written e-7 rather than e-07.
func appendJSONFloat(b []byte, f float64, bits int) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
		bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21)) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendJSONString is encoding/json's string form with HTML escaping:
// <, > and & as \u003c..., control characters as \n or \u00XX, U+2028
// and U+2029 escaped. It stops once b passes limit (errAnswerTooLarge), and
// at bytes that are not UTF-8 (errNotUTF8), which encoding/json would write
// as \ufffd.
func appendJSONString(b []byte, s string, limit int) ([]byte, error) {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if len(b)+(i-start) > limit {
			return b, errAnswerTooLarge
		}
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return b, errNotUTF8
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	b = append(b, '"')
	if len(b) > limit {
		return b, errAnswerTooLarge
	}
	return b, nil
}

// oneWriteBytes is the largest answer writeResults copies into one buffer
// to send it in one write.
const oneWriteBytes = 256 << 10

// writeResults answers the JSON of results (one, or a transaction's list)
// with its length, writing each result's rows as they were encoded rather
// than copying them into one more buffer, and sends it at once, so the
// caller can go on with work the client need not wait for.
func writeResults(w http.ResponseWriter, status int, one *result, list []*result) {
	var parts [][]byte
	if one != nil {
		parts = one.jsonParts(parts)
	} else {
		parts = append(parts, []byte(`{"results":[`))
		for i, r := range list {
			if i > 0 {
				parts = append(parts, []byte(","))
			}
			parts = r.jsonParts(parts)
		}
		parts = append(parts, []byte("]}"))
	}
	parts = append(parts, []byte("\n"))
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n <= oneWriteBytes {
		// Each Write past net/http's buffer is a system call of its own,
		// which costs more than copying a small answer into one.
		whole := make([]byte, 0, n)
		for _, p := range parts {
			whole = append(whole, p...)
		}
		parts = [][]byte{whole}
	}
	if n > oneWriteBytes {
		// An answer larger than the socket buffers waits for its client
		// to read it: bounded, so that clients that stop reading cannot
		// keep answers (up to http.max_result_bytes each) in memory.
		// net/http clears it once the request is done, so the next
		// request on a kept-alive connection starts without it.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(answerWriteTime(n)))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(n))
	w.WriteHeader(status)
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return
		}
	}
	_ = http.NewResponseController(w).Flush()
}

// answerWriteBase and answerWriteRate set how long a client may take to
// read an answer (answerWriteTime); tests shorten them.
var (
	answerWriteBase = 30 * time.Second
	answerWriteRate = 1 << 20 // bytes per second
)

// answerWriteTime is how long a client may take to read an answer of n
// bytes: 30 s, and a second per MiB, so a client that reads at least
// 1 MiB/s always gets its answer.
func answerWriteTime(n int) time.Duration {
	return answerWriteBase + time.Duration(n)*time.Second/time.Duration(answerWriteRate)
}

// jsonParts appends the pieces of r's JSON object: its fields in the
// order encoding/json gives them, the rows as readResult encoded them.
func (r *result) jsonParts(parts [][]byte) [][]byte {
	head := append([]byte(nil), `{"cols":`...)
	head = appendStrings(head, r.Cols)
	head = append(head, `,"col_types":`...)
	head = appendStrings(head, r.ColTypes)
	head = append(head, `,"rows":`...)
	tail := append([]byte(nil), `,"rowcount":`...)
	tail = strconv.AppendInt(tail, r.RowCount, 10)
	tail = append(tail, `,"duration":`...)
	tail = appendJSONFloat(tail, r.Duration, 64)
	tail = append(tail, '}')
	return append(parts, head, r.Rows, tail)
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		if !utf8.ValidString(s) {
			// A column name is not data: it may keep its \ufffd.
			s = strings.ToValidUTF8(s, "\ufffd")
		}
		b, _ = appendJSONString(b, s, math.MaxInt)
	}
	return append(b, ']')
}

package httpfront

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/pgwarden/pgwarden/internal/ascii"
)

// checkBodyKeys refuses, in a body that already decoded as JSON, a key of
// pgwarden's own objects (everything outside the values of "args" and
// "bulk_args", which are the client's data) that an object holds twice or
// that is not written as pgwarden names it. encoding/json takes the last
// of a key written twice and matches names without regard to case, also
// through Unicode folding ("ſtmt" is "stmt"), so {"stmt": A, "STMT": B}
// ran B where a proxy, a log or an audit tool reading the body saw A.
// Every name pgwarden reads is lower-case letters and underscores.
func checkBodyKeys(body []byte) error {
	s := bodyScan{b: body}
	return s.value(true)
}

// bodyScan walks JSON already known to be valid.
type bodyScan struct {
	b []byte
	i int
}

func (s *bodyScan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// str reads the string whose quote is at s.i and returns its contents as
// written, escapes and all.
func (s *bodyScan) str() []byte {
	start := s.i + 1
	for s.i++; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			s.i++
		case '"':
			s.i++
			return s.b[start : s.i-1]
		}
	}
	return s.b[start:]
}

// value reads one value; checked says its objects are pgwarden's own.
func (s *bodyScan) value(checked bool) error {
	s.space()
	if s.i >= len(s.b) {
		return nil
	}
	switch s.b[s.i] {
	case '"':
		s.str()
	case '{':
		s.i++
		var seen []string
		for {
			s.space()
			if s.i >= len(s.b) || s.b[s.i] == '}' {
				s.i++
				return nil
			}
			if s.b[s.i] == ',' {
				s.i++
				s.space()
			}
			raw := s.str()
			s.space()
			s.i++ // the colon
			if !checked {
				if err := s.value(false); err != nil {
					return err
				}
				continue
			}
			key := string(raw)
			if bytes.IndexByte(raw, '\\') >= 0 {
				json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &key)
			}
			if !ascii.IsLowerName(key) {
				return fmt.Errorf("the key %q is not written as pgwarden names it (its names are lower-case letters and underscores: \"stmt\", \"bulk_args\")", key)
			}
			if slices.Contains(seen, key) {
				return fmt.Errorf("one object holds the key %q twice", key)
			}
			seen = append(seen, key)
			if err := s.value(key != "args" && key != "bulk_args"); err != nil {
				return err
			}
		}
	case '[':
		s.i++
		for {
			s.space()
			if s.i >= len(s.b) || s.b[s.i] == ']' {
				s.i++
				return nil
			}
			if s.b[s.i] == ',' {
				s.i++
			}
			if err := s.value(checked); err != nil {
				return err
			}
		}
	default: // a number, true, false or null
		for s.i < len(s.b) && bytes.IndexByte([]byte(" \t\n\r,]}"), s.b[s.i]) < 0 {
			s.i++
		}
	}
	return nil
}

// loneSurrogate finds a \u escape of a UTF-16 surrogate without its other
// half, in a body already known to be valid JSON (where a backslash only
// starts an escape inside a string). JSON's grammar lets one through, but
// it stands for no character: encoding/json decodes it as U+FFFD, so the
// value stored was not the one sent, and PostgreSQL refuses one in its own
// JSON and in U&-escaped string literals.
func loneSurrogate(body []byte) (string, bool) {
	hex4 := func(i int) (rune, bool) {
		if i+6 > len(body) || body[i] != '\\' || body[i+1] != 'u' {
			return 0, false
		}
		var r rune
		for _, c := range body[i+2 : i+6] {
			switch {
			case '0' <= c && c <= '9':
				r = r<<4 | rune(c-'0')
			case 'a' <= c && c <= 'f':
				r = r<<4 | rune(c-'a'+10)
			case 'A' <= c && c <= 'F':
				r = r<<4 | rune(c-'A'+10)
			default:
				return 0, false
			}
		}
		return r, true
	}
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		r, ok := hex4(i)
		if !ok {
			i++ // a two-character escape: skip what it escapes
			continue
		}
		switch {
		case 0xD800 <= r && r <= 0xDBFF:
			if lo, ok := hex4(i + 6); ok && 0xDC00 <= lo && lo <= 0xDFFF {
				i += 11
				continue
			}
			return string(body[i : i+6]), true
		case 0xDC00 <= r && r <= 0xDFFF:
			return string(body[i : i+6]), true
		}
		i += 5
	}
	return "", false
}

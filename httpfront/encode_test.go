package httpfront

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

func TestByteaArgumentsReadBase64AndHex(t *testing.T) {
	for in, want := range map[string]string{
		"AP9cQQ==":     "\x00\xff\\A",
		"AP9cQQ":       "\x00\xff\\A",
		`\x00ff5c41`:   "\x00\xff\\A",
		`\x`:           "",
		"":             "",
		"aGVsbG8=":     "hello",
		"aGVsbG8":      "hello",
		`\x68656C6c6F`: "hello",
	} {
		got, err := argString(in).BytesValue()
		if err != nil || string(got) != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"plain text!", "hello", `\xzz`, `\x123`, "aGVsbG8==", "a"} {
		if got, err := argString(in).BytesValue(); err == nil {
			t.Errorf("%q: %q, want an error", in, got)
		}
	}
}

// FuzzByteaArgument: whatever bytes a client means, their base64 (padded or
// not) and their hex form come back as those bytes; any other string is
// refused or read, never a panic.
func FuzzByteaArgument(f *testing.F) {
	f.Add([]byte("\x00\xff\\A"), "AP9cQQ")
	f.Add([]byte{}, `\x`)
	f.Fuzz(func(t *testing.T, b []byte, s string) {
		for _, form := range []string{base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b), `\x` + hex.EncodeToString(b)} {
			got, err := argString(form).BytesValue()
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("%q: %q %v, want %q", form, got, err, b)
			}
		}
		argString(s).BytesValue()
	})
}

func TestNestedArrayArgumentsOfOneShapeAreMultiDimensional(t *testing.T) {
	for in, want := range map[string]string{
		`[[1,2],[3,4]]`:         "[2 2]",
		`[[[1],[2]],[[3],[4]]]`: "[2 2 1]",
		`[["a"]]`:               "[1 1]",
		`[[1,2],[3]]`:           "",
		`[[1,[2]],[3,4]]`:       "",
		`[[],[]]`:               "",
		`[1,[2]]`:               "",
		`[[1],{"a":[1]}]`:       "",
		`[]`:                    "",
		`[[[1],[2]],[3,4]]`:     "",
	} {
		v := jsonArg([]byte(in), 0)
		got := ""
		if md, ok := v.(argArray); ok {
			var lens []int32
			for _, d := range md.Dims {
				lens = append(lens, d.Length)
			}
			got = fmt.Sprint(lens)
			if b, err := json.Marshal(md); err != nil || string(b) != in {
				t.Errorf("%s marshals as %s %v", in, b, err)
			}
		}
		if got != want {
			t.Errorf("%s: dimensions %q, want %q", in, got, want)
		}
	}
}

// FuzzScalarArgument: a scalar argument converts as decoding it with
// encoding/json (UseNumber) says: a number, true or false as its literal
// text, a string unquoted, null as nil.
func FuzzScalarArgument(f *testing.F) {
	for _, s := range []string{`"a\"b\u00e9"`, `"plain"`, `-0`, `9223372036854775808`, `1.5e3`, `true`, `false`, `null`, ` 12 `, `""`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) || !utf8.ValidString(s) {
			return
		}
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			return
		}
		var want any
		switch v := v.(type) {
		case json.Number:
			want = argLiteral(v)
		case string:
			want = argString(v)
		case bool:
			want = argLiteral(fmt.Sprint(v))
		case nil:
			want = nil
		default:
			return // objects and arrays have tests of their own
		}
		if got := jsonArg([]byte(s), 0); got != want {
			t.Fatalf("%q: %#v, want %#v", s, got, want)
		}
	})
}

// Arrays are taken apart at most PostgreSQL's 6 dimensions deep; deeper
// ones go as their JSON text. Each level is parsed again, so 10,000 nested
// brackets (a 20 KB body) cost 1.6 s of CPU without the bound.
func TestDeepArrayArgumentsStayJSONText(t *testing.T) {
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	md, ok := jsonArg([]byte(deep), 0).(argArray)
	if !ok || len(md.Dims) != maxArgArrayDepth || len(md.Elements) != 1 {
		t.Fatalf("10,000 levels: %T", jsonArg([]byte(deep), 0))
	}
	if o, ok := md.Elements[0].(argObject); !ok || len(o) != 2*(10000-maxArgArrayDepth) {
		t.Fatalf("below the bound: %T", md.Elements[0])
	}
	if b, err := json.Marshal(md); err != nil || string(b) != deep {
		t.Fatalf("marshalled back: %v", err)
	}
	six := `[[[[[[1,2]]]]]]`
	md, ok = jsonArg([]byte(six), 0).(argArray)
	if !ok || len(md.Dims) != 6 {
		t.Fatalf("a 6-dimensional array: %#v", md)
	}
	if b, _ := json.Marshal(jsonArg([]byte(`[[[[[[[{"a":1}]]]]]]]`), 0)); string(b) != `[[[[[[[{"a":1}]]]]]]]` {
		t.Fatalf("seven levels as JSON: %s", b)
	}
}

// FuzzArrayElements: the one-pass cut of a valid JSON array gives the
// elements encoding/json gives.
func FuzzArrayElements(f *testing.F) {
	for _, s := range []string{`[]`, `[ ]`, `[1, "a,]\"[", {"k":[1,2]}, [[]], null ]`, `[""]`, `["\\\\"]`, "[\t1\n]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var want []json.RawMessage
		if len(s) == 0 || s[0] != '[' || json.Unmarshal([]byte(s), &want) != nil {
			return
		}
		got := arrayElements(bytes.TrimSpace([]byte(s)))
		if len(got) != len(want) {
			t.Fatalf("%q: %d elements, want %d", s, len(got), len(want))
		}
		for i := range got {
			if g := bytes.TrimSpace(got[i]); !bytes.Equal(g, bytes.TrimSpace(want[i])) {
				t.Fatalf("%q: element %d is %q, want %q", s, i, g, want[i])
			}
		}
	})
}

func TestArraysGoAsPostgreSQLsArrayTextWherePgxKnowsNoType(t *testing.T) {
	for body, want := range map[string]string{
		`["ok","sad",null]`:      `{"ok","sad",NULL}`,
		`[]`:                     `{}`,
		`[["a"],["b"]]`:          `{{"a"},{"b"}}`,
		`[["a"],["b","c"]]`:      `{{"a"},{"b","c"}}`,
		`[1,true,{"k":[1]}]`:     `{"1","true","{\"k\":[1]}"}`,
		`["(1,\"x y\")","a\\b"]`: `{"(1,\"x y\")","a\\b"}`,
	} {
		if got := string(appendArrayText(nil, jsonArg([]byte(body), 0))); got != want {
			t.Errorf("%s: %s, want %s", body, got, want)
		}
	}
	// A parameter of a type pgx does not know (OID 99999 here) takes an
	// array as that text; one it knows (int4[]) by pgx's own
	// codec, as before.
	m := pgtype.NewMap()
	sendArraysAsText(m)
	buf, err := m.Encode(99999, pgtype.TextFormatCode, jsonArg([]byte(`["ok","sad"]`), 0), nil)
	if err != nil || string(buf) != `{"ok","sad"}` {
		t.Fatalf("unknown type: %q %v", buf, err)
	}
	if buf, err := m.Encode(pgtype.Int4ArrayOID, pgtype.TextFormatCode, jsonArg([]byte(`[1,2]`), 0), nil); err != nil || string(buf) != `{1,2}` {
		t.Fatalf("int4[] went another way: %q %v", buf, err)
	}
}

// FuzzArrayText checks that any JSON array argument becomes array text that
// PostgreSQL's array input reads back element for element: strings as
// they were, numbers and booleans as written, null as NULL, nested arrays
// nested (to PostgreSQL's 6 dimensions; deeper ones are one element, their
// JSON text), objects as one element each.
func FuzzArrayText(f *testing.F) {
	for _, s := range []string{`[]`, `["ok",null,"sad"]`, `[["a"],["b","c"]]`, `[1,true,{"k":[1]},"a\"b\\c",""]`, `["NULL","{}",","]`, `[[[[[[[[1]]]]]]]]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var want []any
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		// Arguments come from a body already checked to be valid JSON.
		if !utf8.ValidString(s) || !json.Valid([]byte(s)) || strings.TrimSpace(s)[0] != '[' || dec.Decode(&want) != nil {
			return
		}
		text := string(appendArrayText(nil, jsonArg([]byte(s), 0)))
		got, rest, ok := readArrayText(text)
		if !ok || rest != "" {
			t.Fatalf("%s: %q does not read as array text", s, text)
		}
		sameElements(t, s, text, want, got, 1)
	})
}

// readArrayText reads PostgreSQL array text as appendArrayText writes it:
// nested braces, quoted elements with backslash escapes, and NULL.
func readArrayText(s string) (out []any, rest string, ok bool) {
	if !strings.HasPrefix(s, "{") {
		return nil, s, false
	}
	s = s[1:]
	out = []any{}
	if strings.HasPrefix(s, "}") {
		return out, s[1:], true
	}
	for {
		switch {
		case strings.HasPrefix(s, "{"):
			var inner []any
			if inner, s, ok = readArrayText(s); !ok {
				return nil, s, false
			}
			out = append(out, inner)
		case strings.HasPrefix(s, "NULL"):
			out, s = append(out, nil), s[4:]
		case strings.HasPrefix(s, `"`):
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
					if i == len(s) {
						return nil, s, false
					}
				}
				b.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, s, false
			}
			out, s = append(out, b.String()), s[i+1:]
		default:
			return nil, s, false
		}
		switch {
		case strings.HasPrefix(s, ","):
			s = s[1:]
		case strings.HasPrefix(s, "}"):
			return out, s[1:], true
		default:
			return nil, s, false
		}
	}
}

func sameElements(t *testing.T, in, text string, want []any, got []any, depth int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %q has %d elements at depth %d, want %d", in, text, len(got), depth, len(want))
	}
	for i, w := range want {
		g := got[i]
		switch w := w.(type) {
		case nil:
			if g != nil {
				t.Fatalf("%s: %q: element %d is %v, want NULL", in, text, i, g)
			}
		case string:
			if g != w {
				t.Fatalf("%s: %q: element %d is %q, want %q", in, text, i, g, w)
			}
		case json.Number:
			if g != w.String() {
				t.Fatalf("%s: %q: element %d is %q, want %q", in, text, i, g, w)
			}
		case bool:
			if g != fmt.Sprint(w) {
				t.Fatalf("%s: %q: element %d is %q, want %v", in, text, i, g, w)
			}
		case map[string]any:
			if _, ok := g.(string); !ok {
				t.Fatalf("%s: %q: object element %d is %v, not one string", in, text, i, g)
			}
		case []any:
			if depth >= maxArgArrayDepth {
				if _, ok := g.(string); !ok {
					t.Fatalf("%s: %q: an array %d deep is %v, not its JSON text", in, text, depth+1, g)
				}
				continue
			}
			inner, ok := g.([]any)
			if !ok {
				t.Fatalf("%s: %q: element %d is %v, want an array", in, text, i, g)
			}
			sameElements(t, in, text, w, inner, depth+1)
		}
	}
}

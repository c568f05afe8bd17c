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
		v := jsonArg([]byte(in))
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
		if got := jsonArg([]byte(s)); got != want {
			t.Fatalf("%q: %#v, want %#v", s, got, want)
		}
	})
}

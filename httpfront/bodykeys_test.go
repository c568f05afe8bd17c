package httpfront

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A body whose own keys are written twice or in another case is refused:
// encoding/json would take the last, or match the name regardless of case,
// and run what a proxy or log reading the body did not see. The client's
// data (args, bulk_args) keeps whatever keys it has.
func TestBodyKeysAreWrittenOnceAndAsNamed(t *testing.T) {
	refused := map[string]string{
		`{"stmt":"SELECT 1","stmt":"SELECT 2"}`:                             "twice",
		`{"stmt":"SELECT 1","STMT":"SELECT 2"}`:                             `"STMT"`,
		`{"Stmt":"SELECT 1"}`:                                               `"Stmt"`,
		`{"ſtmt":"SELECT 1"}`:                                               `"ſtmt"`,
		`{"\u0073tmt":"SELECT 1","stmt":"SELECT 2"}`:                        "twice",
		`{"transaction":[{"stmt":"SELECT 1"},{"stmt":"a","sTmt":"b"}]}`:     `"sTmt"`,
		`{"credentials":{"user":"a","USER":"b","password":"p"},"stmt":"x"}`: `"USER"`,
		`{"stmt":"x","args":[],"args":[1]}`:                                 "twice",
	}
	for body, why := range refused {
		e := decodeTestBody(t, body)
		if e == nil || e.status != http.StatusBadRequest || e.code != codeProtocolViolation || !strings.Contains(e.msg, "ambiguous") || !strings.Contains(e.msg, why) {
			t.Errorf("%s: %+v, want a 400 naming %s", body, e, why)
		}
	}
	for _, body := range []string{
		`{"stmt":"SELECT $1","args":[{"a":1,"a":2,"A":3}]}`,
		`{"stmt":"x","bulk_args":[[{"k":1,"k":2,"K":[{"k":0,"k":1}]}]]}`,
		`{"transaction":[{"stmt":"a","args":[{"stmt":1,"stmt":2}]},{"stmt":"b"}]}`,
		`{"stmt":"SELECT '\"stmt\":1, \\\"x'", "args" : [ "}" , "{" , 1e5, true, null ] }`,
		` { "credentials" : { "user" : "a" , "password" : "p" } , "stmt" : "x" } `,
	} {
		if e := decodeTestBody(t, body); e != nil {
			t.Errorf("%s: %+v", body, e)
		}
	}
}

func decodeTestBody(t *testing.T, body string) *sqlError {
	t.Helper()
	r := httptest.NewRequest("POST", "/_sql", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	var req sqlRequest
	return decodeBody(httptest.NewRecorder(), r, 1<<20, &req, nil, 0)
}

func TestALoneSurrogateEscapeIsFound(t *testing.T) {
	for body, want := range map[string]string{
		`{"stmt":"SELECT $1","args":["a\ud800b"]}`:         `\ud800`,
		`{"stmt":"SELECT $1","args":["\uDC00"]}`:           `\uDC00`,
		`{"stmt":"SELECT $1","args":["\ud83d"]}`:           `\ud83d`,
		`{"stmt":"SELECT $1","args":["\ud83d\u0041"]}`:     `\ud83d`,
		`{"stmt":"SELECT $1","args":["\ud83d\ude00"]}`:     "",
		`{"stmt":"SELECT $1","args":["\\ud800"]}`:          "", // a backslash, then text
		`{"stmt":"SELECT $1","args":["\\\ud800"]}`:         `\ud800`,
		`{"stmt":"SELECT $1","args":["\u00e9\"\n\ufffd"]}`: "",
	} {
		got, found := loneSurrogate([]byte(body))
		if got != want || found != (want != "") {
			t.Errorf("%s: found %q (%v), want %q", body, got, found, want)
		}
	}
}

// readBody asks for twice what its buffer holds once that passes 64 KiB:
// up front from a Content-Length, as it doubles without one, and reads
// nothing more once refused.
func TestABodyTakesRoomBeforeItsBufferGrows(t *testing.T) {
	body := strings.Repeat("x", 300<<10)
	for _, c := range []struct {
		name          string
		contentLength int64
		wantAsked     []int64
	}{
		{"with a length", int64(len(body)), []int64{2 * (300<<10 + 1)}},
		{"chunked", -1, []int64{2 * 128 << 10, 2 * 256 << 10, 2 * 512 << 10}},
	} {
		var asked []int64
		got, err := readBody(strings.NewReader(body), c.contentLength, 1<<20, func(n int64) bool { asked = append(asked, n); return true })
		if err != nil || string(got) != body || fmt.Sprint(asked) != fmt.Sprint(c.wantAsked) {
			t.Fatalf("%s: %d bytes, %v, asked %v, want %v", c.name, len(got), err, asked, c.wantAsked)
		}
		r := &countingReader{r: strings.NewReader(body)}
		if _, err := readBody(r, c.contentLength, 1<<20, func(int64) bool { return false }); !errors.Is(err, errBodyNoRoom) || r.n > 64<<10 {
			t.Fatalf("%s with no room: %v after reading %d bytes", c.name, err, r.n)
		}
	}
	if got, err := readBody(strings.NewReader("{}"), 2, 1<<20, nil); err != nil || string(got) != "{}" {
		t.Fatalf("a small body: %q %v", got, err)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// countJSONValues counts from above (containers twice at most), outside
// strings only; decodeBody
// asks for room for what a body of many values decodes into before it
// decodes it.
func TestABodyOfManyValuesTakesRoomForWhatItDecodesInto(t *testing.T) {
	for text, want := range map[string]int{
		`1`:                             1,
		`[1,2,3]`:                       4,
		`{"a":[1,{"b":2}],"c":"x,y:["}`: 6,
		`["\",[", "\\"]`:                3,
		`{"stmt":"SELECT 1"}`:           2,
	} {
		if got := countJSONValues([]byte(text)); got < want || got > 2*want {
			t.Errorf("%s: %d values, want %d", text, got, want)
		}
	}
	body := `{"stmt":"SELECT $1","args":[[` + strings.Repeat("0,", 50000) + `0]]}`
	var asked int64
	r := httptest.NewRequest("POST", "/_sql", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	var req sqlRequest
	e := decodeBody(httptest.NewRecorder(), r, 1<<20, &req, func(n int64) bool { asked = max(asked, n); return n < 1<<20 }, 64<<20)
	if e != errBodyMemory || asked < 50000*bytesPerDecodedValue {
		t.Fatalf("a body of 50,000 values with 1 MiB of room now: %v, asked for %d", e, asked)
	}
	// Room it could never have is no "try again": 413.
	r = httptest.NewRequest("POST", "/_sql", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	e = decodeBody(httptest.NewRecorder(), r, 1<<20, &req, func(n int64) bool { return n < 1<<20 }, 1<<20)
	if e == nil || e.status != 413 || e.code != "54000" || !strings.Contains(e.msg, "send fewer values per request") {
		t.Fatalf("a body of 50,000 values with at most 1 MiB of room: %+v", e)
	}
}

package httpfront

import (
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
	return decodeBody(httptest.NewRecorder(), r, 1<<20, &req)
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

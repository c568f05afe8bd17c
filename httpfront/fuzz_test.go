package httpfront

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pgwarden/pgwarden/snapshot"
)

// FuzzAuthorizationHeader: any Authorization header is either credentials
// or a refusal, never a panic.
func FuzzAuthorizationHeader(f *testing.F) {
	for _, s := range []string{"Basic YWxpY2U6cHc=", "Basic !!!", "Bearer a.b.c", "Basic OnB3", "Digest x", "Bearer " + strings.Repeat(".", 9000)} {
		f.Add(s)
	}
	snap := &snapshot.Snapshot{}
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("POST", "/_sql", nil)
		r.Header.Set("Authorization", h)
		c, fail := readCredentials(r, snap, nil)
		if (c == nil) == (fail == nil) {
			t.Fatalf("credentials %v and failure %v", c, fail)
		}
		if c != nil && c.basic && c.user == "" {
			t.Fatal("Basic credentials without a user")
		}
	})
}

// FuzzSQLBody: any body is decoded within the limit or refused.
func FuzzSQLBody(f *testing.F) {
	for _, s := range []string{`{"stmt":"SELECT 1","args":[1,2.5,"x",null,{"a":[1]}]}`, `{"transaction":[{"stmt":"x"}]}`,
		`{"bulk_args":[[1],[2]],"stmt":"x"}`, strings.Repeat("[", 5000), `{"stmt":"\xff"}`, `{}{}`,
		`{"stmt":"a","STMT":"b"}`, `{"\u0073tmt":"a","stmt":"b"}`, `{"stmt":"x","args":[{"a":1,"a":2}]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if len(body) > 8192 {
			return // the limit below is 4096; larger inputs only slow the fuzzer
		}
		r := httptest.NewRequest("POST", "/_sql", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var req sqlRequest
		w := httptest.NewRecorder()
		e := decodeBody(w, r, 4096, &req)
		if e != nil && e.status != http.StatusBadRequest && e.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d", e.status)
		}
		if e != nil {
			return
		}
		// Arguments convert without a panic; an object keeps its text.
		all := append([]rawArgs{req.Args}, req.BulkArgs...)
		for _, st := range req.Transaction {
			all = append(all, st.Args)
		}
		for _, args := range all {
			for i, v := range jsonArgs(args) {
				if o, ok := v.(argObject); ok && !json.Valid([]byte(o)) {
					t.Fatalf("args[%d]: object %q is not JSON", i, o)
				}
			}
		}
	})
}

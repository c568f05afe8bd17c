package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	vErrors "github.com/pb33f/libopenapi-validator/errors"
)

// openAPIValidator reads the document the server serves and the one in the
// repository, which must be the same bytes.
func openAPIValidator(t *testing.T, g *gateway) validator.Validator {
	t.Helper()
	resp, err := http.Get(g.httpURL() + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	kept, err := os.ReadFile("../httpfront/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !bytes.Equal(served, kept) {
		t.Fatalf("GET /openapi.json: %d, and not the repository's httpfront/openapi.json", resp.StatusCode)
	}
	doc, err := libopenapi.NewDocument(kept)
	if err != nil {
		t.Fatal(err)
	}
	if v := doc.GetVersion(); v != "3.1.0" {
		t.Fatalf("OpenAPI version %s, want 3.1.0", v)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("the OpenAPI document does not build a validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		t.Fatalf("the OpenAPI document is not valid OpenAPI 3.1:\n%s", describe(verrs))
	}
	return v
}

// TestEveryAnswerOfTheHTTPAPIMatchesTheOpenAPIDocument sends real requests
// (successes and each kind of error) and validates every answer, and every
// well-formed request, against httpfront/openapi.json.
func TestEveryAnswerOfTheHTTPAPIMatchesTheOpenAPIDocument(t *testing.T) {
	g := startHTTPGateway(t, "max_body_bytes = 2000\ndefault_database = \"postgres\"\n", httpRules+`
[[hba]]
protocol = "http"
method = "reject"
`, []testUser{{name: "alice", password: "alice-Pass-1"}})
	v := openAPIValidator(t, g)
	if err := pg.Exec("DROP TABLE IF EXISTS openapi_t; CREATE TABLE openapi_t (id int PRIMARY KEY, doc jsonb); GRANT ALL ON openapi_t TO alice"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Exec("DROP TABLE IF EXISTS openapi_t") })
	alice := basic("alice", "alice-Pass-1")["Authorization"]

	cases := []struct {
		name, method, path, contentType, body, auth string
		hdr                                         map[string]string
		status                                      int
		requestConforms                             bool
	}{
		{"one statement", "POST", "/_sql", "application/json", `{"stmt": "SELECT $1::int AS a, 'x' AS b, NULL AS c, '{\"k\":1}'::jsonb AS d, ARRAY[1,2] AS e", "args": [5]}`, alice, nil, 200, true},
		{"bulk_args", "POST", "/_sql?db=postgres", "application/json", `{"stmt": "INSERT INTO openapi_t VALUES ($1, $2)", "bulk_args": [[1, {"a": 1}], [2, null]]}`, alice, nil, 200, true},
		{"transaction", "POST", "/_sql", "application/json", `{"transaction": [{"stmt": "SELECT count(*) FROM openapi_t"}, {"stmt": "DELETE FROM openapi_t"}]}`, alice, nil, 200, true},
		{"credentials in the body", "POST", "/_sql", "application/json", `{"stmt": "SELECT 1", "credentials": {"user": "alice", "password": "alice-Pass-1"}}`, "", nil, 200, true},
		{"trust user", "POST", "/_sql", "application/json", `{"stmt": "SELECT 1"}`, basic("dave", "x")["Authorization"], nil, 200, true},
		{"SQL error", "POST", "/_sql", "application/json", `{"stmt": "SELECT 1/0"}`, alice, nil, 400, true},
		{"error in a transaction names the statement", "POST", "/_sql", "application/json", `{"transaction": [{"stmt": "SELECT 1"}, {"stmt": "SELECT 1/0"}]}`, alice, nil, 400, true},
		{"two shapes", "POST", "/_sql", "application/json", `{"stmt": "SELECT 1", "transaction": []}`, alice, nil, 400, true},
		{"unknown field", "POST", "/_sql", "application/json", `{"stmt": "SELECT 1", "bogus": 1}`, alice, nil, 400, false},
		{"not JSON", "POST", "/_sql", "application/json", `{"stmt": `, alice, nil, 400, false},
		{"wrong password", "POST", "/_sql", "application/json", `{"stmt": "SELECT 1"}`, basic("alice", "wrong")["Authorization"], nil, 401, true},
		{"no credentials", "POST", "/_sql", "application/json", `{"stmt": "SELECT 1"}`, "", nil, 401, true},
		{"rejected user", "POST", "/_sql", "application/json", `{"stmt": "SELECT 1"}`, basic("eve", "x")["Authorization"], nil, 403, true},
		{"body too large", "POST", "/_sql", "application/json", `{"stmt": "SELECT '` + strings.Repeat("x", 3000) + `'"}`, alice, nil, 413, true},
		{"not application/json", "POST", "/_sql", "text/plain", `{"stmt": "SELECT 1"}`, alice, nil, 415, false},
		{"foreign Host", "POST", "/_sql", "application/json", `{"stmt": "SELECT 1"}`, alice, map[string]string{"Host": "evil.example"}, 421, true},
		{"token", "POST", "/_token", "application/json", `{"expire": "1h"}`, alice, nil, 200, true},
		{"token without a body", "POST", "/_token", "", "", alice, nil, 200, true},
		{"token with a bad lifetime", "POST", "/_token", "application/json", `{"expire": "forever"}`, alice, nil, 400, true},
		{"token under a trust rule", "POST", "/_token", "", "", basic("dave", "x")["Authorization"], nil, 403, true},
		{"token with a wrong password", "POST", "/_token", "", "", basic("alice", "wrong")["Authorization"], nil, 401, true},
		{"healthz", "GET", "/healthz", "", "", "", nil, 200, true},
		{"readyz", "GET", "/readyz", "", "", "", nil, 200, true},
		{"resource metadata", "GET", "/.well-known/oauth-protected-resource", "", "", "", nil, 200, true},
		{"the document itself", "GET", "/openapi.json", "", "", "", nil, 200, true},
	}
	// The validator does refuse what the document does not allow.
	fake := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{"cols": 1, "rows": []}`))}
	req, _ := http.NewRequest("POST", g.httpURL()+"/_sql", strings.NewReader(`{"stmt": "SELECT 1"}`))
	req.Header.Set("Content-Type", "application/json")
	if ok, _ := v.ValidateHttpResponse(req, fake); ok {
		t.Fatal("a malformed result passed the validator")
	}
	c := &http.Client{Timeout: 30 * time.Second}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			newReq := func() *http.Request {
				var body io.Reader
				if tc.body != "" {
					body = strings.NewReader(tc.body)
				}
				req, err := http.NewRequest(tc.method, g.httpURL()+tc.path, body)
				if err != nil {
					t.Fatal(err)
				}
				if tc.contentType != "" {
					req.Header.Set("Content-Type", tc.contentType)
				}
				if tc.auth != "" {
					req.Header.Set("Authorization", tc.auth)
				}
				for k, val := range tc.hdr {
					if k == "Host" {
						req.Host = val
					} else {
						req.Header.Set(k, val)
					}
				}
				return req
			}
			resp, err := c.Do(newReq())
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, raw)
			}
			resp.Body = io.NopCloser(bytes.NewReader(raw))
			req := newReq()
			req.Host = "127.0.0.1" // the document's server; the Host test is about the answer
			if ok, errs := v.ValidateHttpResponse(req, resp); !ok {
				t.Fatalf("answer %d %s does not match the document:\n%s", resp.StatusCode, raw, describe(errs))
			}
			if tc.requestConforms {
				if ok, errs := v.ValidateHttpRequest(newReq()); !ok {
					t.Fatalf("the request does not match the document:\n%s", describe(errs))
				}
			}
		})
	}
}

func describe(errs []*vErrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "- %s\n", e.Error())
		for _, f := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "    %s\n", f.Error())
		}
	}
	return b.String()
}

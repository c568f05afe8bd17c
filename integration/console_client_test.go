package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// consoleClient is a browser as far as the console can tell: a cookie jar,
// redirects not followed (tests look at them), and the Origin header a
// browser puts on its own pages' posts.
type consoleClient struct {
	t      *testing.T
	base   string
	origin string
	c      *http.Client
}

func newConsoleClient(t *testing.T, base string, transport http.RoundTripper) *consoleClient {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &consoleClient{t: t, base: base, origin: base, c: &http.Client{
		Jar: jar, Timeout: 60 * time.Second, Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// consoleResponse is an answer with its body read.
type consoleResponse struct {
	status int
	header http.Header
	body   string
}

func (r consoleResponse) setCookies(name string) []string {
	var out []string
	for _, c := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, name+"=") {
			out = append(out, c)
		}
	}
	return out
}

func (cc *consoleClient) do(req *http.Request) consoleResponse {
	cc.t.Helper()
	resp, err := cc.c.Do(req)
	if err != nil {
		cc.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return consoleResponse{resp.StatusCode, resp.Header, string(b)}
}

func (cc *consoleClient) get(path string) consoleResponse {
	cc.t.Helper()
	req, _ := http.NewRequest("GET", cc.base+path, nil)
	return cc.do(req)
}

// post sends a form the way a browser does from the console's pages; hdr
// changes headers ("" deletes one).
func (cc *consoleClient) post(path string, form url.Values, hdr map[string]string) consoleResponse {
	cc.t.Helper()
	req, _ := http.NewRequest("POST", cc.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", cc.origin)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	overrideHeaders(req, hdr)
	return cc.do(req)
}

// postMultipart sends the same fields as multipart/form-data.
func (cc *consoleClient) postMultipart(path string, form url.Values) consoleResponse {
	cc.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, vs := range form {
		for _, v := range vs {
			mw.WriteField(k, v)
		}
	}
	mw.Close()
	req, _ := http.NewRequest("POST", cc.base+path, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", cc.origin)
	return cc.do(req)
}

var (
	csrfFieldRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	csrfMetaRE  = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)
	formErrorRE = regexp.MustCompile(`<p id="form-error" class="error" role="alert">([^<]*)</p>`)
)

func firstMatch(t *testing.T, re *regexp.Regexp, body string) string {
	t.Helper()
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in:\n%s", re, body)
	}
	return m[1]
}

// loginForm loads the login page and returns its CSRF token.
func (cc *consoleClient) loginForm() string {
	cc.t.Helper()
	r := cc.get("/")
	if r.status != 200 || !strings.Contains(r.body, `action="/login"`) {
		cc.t.Fatalf("GET /: %d\n%s", r.status, r.body)
	}
	return firstMatch(cc.t, csrfFieldRE, r.body)
}

// tryLogin posts the login form as a browser would after loading it.
func (cc *consoleClient) tryLogin(user, password string) consoleResponse {
	cc.t.Helper()
	noteSecret(password)
	return cc.post("/login", url.Values{"csrf": {cc.loginForm()}, "user": {user}, "password": {password}}, nil)
}

// login logs in and returns the console page's CSRF token.
func (cc *consoleClient) login(user, password string) string {
	cc.t.Helper()
	r := cc.tryLogin(user, password)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
		cc.t.Fatalf("login as %s: %d %v\n%s", user, r.status, r.header, r.body)
	}
	return cc.consoleCSRF()
}

// consoleCSRF loads the console page (which must be the logged-in one) and
// returns its CSRF token.
func (cc *consoleClient) consoleCSRF() string {
	cc.t.Helper()
	r := cc.get("/")
	if r.status != 200 || !strings.Contains(r.body, `id="sql-form"`) {
		cc.t.Fatalf("not logged in: %d\n%s", r.status, r.body)
	}
	return firstMatch(cc.t, csrfMetaRE, r.body)
}

// sql runs stmt through /_sql the way the console page does: the cookie,
// the CSRF header and the page's Origin.
func (cc *consoleClient) sql(db, stmt, csrf string, hdr map[string]string) (int, http.Header, map[string]any) {
	cc.t.Helper()
	body, _ := json.Marshal(map[string]string{"stmt": stmt})
	req, _ := http.NewRequest("POST", cc.base+"/_sql?db="+url.QueryEscape(db), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", cc.origin)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	overrideHeaders(req, hdr)
	r := cc.do(req)
	var out map[string]any
	dec := json.NewDecoder(strings.NewReader(r.body))
	dec.UseNumber()
	dec.Decode(&out)
	return r.status, r.header, out
}

// cookie returns the value of the named cookie the jar holds for the
// console, or "".
func (cc *consoleClient) cookie(name string) string {
	u, _ := url.Parse(cc.base)
	for _, c := range cc.c.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// setCookie puts a cookie into the jar, as a page could plant one.
func (cc *consoleClient) setCookie(name, value string) {
	u, _ := url.Parse(cc.base)
	cc.c.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// consoleRules: alice and bob prove a password; dave is trusted; eve is
// rejected; database "trustdb" is trusted for everyone and "jwtdb" asks for
// a token, so a session must not open them.
const consoleRules = `
[tokens]

[[hba]]
protocol = "http"
user = "eve"
method = "reject"

[[hba]]
protocol = "http"
user = "dave"
method = "trust"

[[hba]]
protocol = "http"
database = "trustdb"
method = "trust"

[[hba]]
protocol = "http"
database = "jwtdb"
method = "jwt"

[[hba]]
protocol = "http"
method = "scram-sha-256"

[[hba]]
protocol = "pg"
method = "scram-sha-256"
`

var consoleUsers = []testUser{
	{name: "alice", password: "alice-Pass-1"},
	{name: "bob", password: "bob-Pass-2"},
	{name: "carol", password: "carol-Pass-3", extra: "disabled = true\n"},
	{name: "dave", password: "dave-Pass-4"},
	{name: "eve", password: "eve-Pass-5"},
	{name: "ops1", password: "ops1-Pass-6", extra: "roles = [\"admin\"]\n"},
}

func startConsoleGateway(t *testing.T, httpSection string) (*gateway, *consoleClient) {
	t.Helper()
	g := startGatewayWith(t, gwOptions{http: true, httpSection: "default_database = \"postgres\"\n" + httpSection}, consoleRules, consoleUsers)
	return g, newConsoleClient(t, g.httpURL(), nil)
}

// cookieAttrs splits a Set-Cookie line into its lower-cased attributes.
func cookieAttrs(line string) map[string]string {
	out := map[string]string{}
	for i, part := range strings.Split(line, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if i == 0 {
			out["name"], out["value"] = k, v
			continue
		}
		out[strings.ToLower(k)] = v
	}
	return out
}

func TestConsoleLoginSetsAStrictHttpOnlyCookieUnderANewID(t *testing.T) {
	g, cc := startConsoleGateway(t, "")
	first := cc.get("/")
	if first.status != 200 || !strings.Contains(first.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %v", first.status, first.header)
	}
	for h, want := range map[string]string{"Content-Security-Policy": "script-src 'self'", "X-Frame-Options": "DENY",
		"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
		if !strings.Contains(first.header.Get(h), want) {
			t.Errorf("%s: %q, want %q in it", h, first.header.Get(h), want)
		}
	}
	for _, want := range []string{`<label for="user">`, `<label for="password">`, `autocomplete="current-password"`} {
		if !strings.Contains(first.body, want) {
			t.Errorf("login page lacks %s", want)
		}
	}

	// A session id planted before login (session fixation) is never
	// promoted: login answers a new id, and the planted one opens nothing.
	planted := strings.Repeat("A", 43)
	cc.setCookie("pgwarden_session", planted)
	r := cc.tryLogin("alice", "alice-Pass-1")
	if r.status != http.StatusSeeOther {
		t.Fatalf("login: %d\n%s", r.status, r.body)
	}
	set := r.setCookies("pgwarden_session")
	if len(set) != 1 {
		t.Fatalf("login set %d session cookies: %v", len(set), r.header.Values("Set-Cookie"))
	}
	a := cookieAttrs(set[0])
	if a["value"] == planted || len(a["value"]) < 43 {
		t.Fatalf("session id %q", a["value"])
	}
	if _, ok := a["httponly"]; !ok || a["samesite"] != "Strict" || a["path"] != "/" {
		t.Fatalf("session cookie attributes: %s", set[0])
	}
	if _, ok := a["secure"]; ok {
		t.Fatalf("Secure on plain HTTP would make the browser drop the cookie: %s", set[0])
	}
	if _, ok := a["domain"]; ok {
		t.Fatalf("the cookie names a Domain: %s", set[0])
	}
	sessionA := a["value"]
	csrf := cc.consoleCSRF()
	status, _, out := cc.sql("postgres", "SELECT current_user AS u, 1 AS n", csrf, nil)
	if status != 200 || jsonText(t, out["rows"]) != `[["alice",1]]` {
		t.Fatalf("/_sql with the session: %d %v", status, out)
	}
	other := newConsoleClient(t, g.httpURL(), nil)
	other.setCookie("pgwarden_session", planted)
	if r := other.get("/"); !strings.Contains(r.body, `action="/login"`) {
		t.Fatal("the planted id opened a session")
	}

	// Logging in from a browser that holds a session ends that session.
	again := newConsoleClient(t, g.httpURL(), nil)
	token := again.loginForm()
	again.setCookie("pgwarden_session", sessionA)
	r = again.post("/login", url.Values{"csrf": {token}, "user": {"bob"}, "password": {"bob-Pass-2"}}, nil)
	if r.status != http.StatusSeeOther || again.cookie("pgwarden_session") == sessionA {
		t.Fatalf("a second login kept the session id: %d", r.status)
	}
	stale := newConsoleClient(t, g.httpURL(), nil)
	stale.setCookie("pgwarden_session", sessionA)
	if status, hdr, _ := stale.sql("postgres", "SELECT 1", csrf, nil); status != 401 || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Cookie") {
		t.Fatalf("the replaced session still works: %d %v", status, hdr)
	}
	if !strings.Contains(g.log.String(), `"credential":"session"`) {
		t.Fatal("the audit log does not say the request came with a session")
	}
}

func TestConsoleOverHTTPSUsesAHostPrefixedSecureCookie(t *testing.T) {
	dir := t.TempDir()
	newPKI(t, filepath.Join(dir, "certs"))
	port := freePortPair()
	g := &gateway{t: t, dir: dir, port: port, sockDir: dir, log: &lockedBuffer{}, done: make(chan struct{}),
		opts: gwOptions{http: true, server: "http_tls = true", httpSection: `default_database = "postgres"`}}
	g.writeConfig(tlsSection + `
[[hba]]
protocol = "http"
ssl = "on"
method = "password"
`)
	g.writeUsers([]testUser{{name: "alice", password: "alice-Pass-1"}})
	g.start()
	base := fmt.Sprintf("https://localhost:%d", port+1)
	cc := newConsoleClient(t, base, &http.Transport{TLSClientConfig: caTLSConfig(t, filepath.Join(dir, "certs", "ca.crt"))})
	r := cc.get("/")
	login := r.setCookies("__Host-pgwarden_login")
	if len(login) != 1 || !strings.Contains(login[0], "; Secure") {
		t.Fatalf("pre-login cookie over HTTPS: %v", r.header.Values("Set-Cookie"))
	}
	r = cc.tryLogin("alice", "alice-Pass-1")
	set := r.setCookies("__Host-pgwarden")
	if r.status != http.StatusSeeOther || len(set) != 1 {
		t.Fatalf("login over HTTPS: %d %v", r.status, r.header.Values("Set-Cookie"))
	}
	a := cookieAttrs(set[0])
	_, secure := a["secure"]
	_, httpOnly := a["httponly"]
	_, domain := a["domain"]
	if !secure || !httpOnly || a["samesite"] != "Strict" || a["path"] != "/" || domain {
		t.Fatalf("__Host- cookie attributes: %s", set[0])
	}
	if len(r.setCookies("pgwarden_session")) != 0 {
		t.Fatal("the plain-HTTP cookie name was used over HTTPS")
	}
	csrf := cc.consoleCSRF()
	if status, _, out := cc.sql("postgres", "SELECT current_user", csrf, nil); status != 200 || jsonText(t, out["rows"]) != `[["alice"]]` {
		t.Fatalf("/_sql over HTTPS with the session: %d %v", status, out)
	}
	// The http:// origin is another origin than https://.
	cc.origin = fmt.Sprintf("http://localhost:%d", port+1)
	if status, _, _ := cc.sql("postgres", "SELECT 1", csrf, nil); status != 403 {
		t.Fatalf("an http:// Origin on HTTPS: %d", status)
	}
}

func TestEveryLoginFailureLooksTheSame(t *testing.T) {
	g, cc := startConsoleGateway(t, "")
	var first string
	for _, c := range []struct{ user, password, why string }{
		{"alice", "wrong-password", "wrong password"},
		{"nobody", "alice-Pass-1", "unknown user"},
		{"carol", "carol-Pass-3", "disabled user"},
		{"dave", "dave-Pass-4", "trust rule: sessions need a password rule"},
		{"eve", "eve-Pass-5", "reject rule"},
		{"alice", "", "empty password"},
	} {
		r := cc.tryLogin(c.user, c.password)
		if r.status != 401 || r.setCookies("pgwarden_session") != nil {
			t.Fatalf("%s: %d %v", c.why, r.status, r.header.Values("Set-Cookie"))
		}
		msg := firstMatch(t, formErrorRE, r.body)
		if first == "" {
			first = msg
		}
		if msg != first {
			t.Fatalf("%s answers %q, others %q", c.why, msg, first)
		}
		if !strings.Contains(r.body, `aria-invalid="true"`) {
			t.Fatalf("%s: the fields are not marked invalid", c.why)
		}
	}
	for _, reason := range []string{"wrong password", "unknown user", "user disabled", "accepted only under password or scram-sha-256 rules", "rule method is reject"} {
		if !strings.Contains(g.log.String(), reason) {
			t.Errorf("the audit log lacks the true reason %q", reason)
		}
	}
}

func TestLoginFailuresAreThrottledWhateverTheirReason(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true, throttle: `failure_delay = "300ms"` + "\n" + `max_delay = "1200ms"`}, consoleRules, consoleUsers)
	cc := newConsoleClient(t, g.httpURL(), nil)
	for _, c := range []struct {
		user, password string
		min            time.Duration
	}{
		{"alice", "wrong-password", 0}, {"alice", "wrong-password", 300}, {"alice", "wrong-password", 600},
		{"alice", "wrong-password", 1200},
		{"eve", "eve-Pass-5", 0}, {"eve", "eve-Pass-5", 300}, {"dave", "dave-Pass-4", 0}, {"dave", "dave-Pass-4", 300},
	} {
		form := cc.loginForm()
		start := time.Now()
		r := cc.post("/login", url.Values{"csrf": {form}, "user": {c.user}, "password": {c.password}}, nil)
		// The backoff runs from the moment the server recorded the last
		// failure, a little before this client saw it: allow for that.
		if took := time.Since(start); r.status != 401 || took < c.min*time.Millisecond-50*time.Millisecond {
			t.Fatalf("failed login of %s answered %d after %v, want 401 after at least %v", c.user, r.status, took, c.min*time.Millisecond)
		}
	}
	// A success resets the count.
	cc.login("alice", "alice-Pass-1")
	cc = newConsoleClient(t, g.httpURL(), nil)
	start := time.Now()
	cc.tryLogin("alice", "wrong-password")
	cc.tryLogin("alice", "wrong-password")
	if took := time.Since(start); took >= 1200*time.Millisecond {
		t.Fatalf("after a success the delay should restart at 300ms, took %v", took)
	}
}

func TestCrossSiteFormsAndCallsAreRefused(t *testing.T) {
	g, cc := startConsoleGateway(t, "")
	form := cc.loginForm()
	good := url.Values{"csrf": {form}, "user": {"alice"}, "password": {"alice-Pass-1"}}
	without := url.Values{"user": {"alice"}, "password": {"alice-Pass-1"}}
	wrong := url.Values{"csrf": {strings.Repeat("x", 43)}, "user": {"alice"}, "password": {"alice-Pass-1"}}
	for _, c := range []struct {
		why    string
		form   url.Values
		hdr    map[string]string
		status int
	}{
		{"no CSRF token", without, nil, 403},
		{"a wrong CSRF token", wrong, nil, 403},
		{"another site's Origin", good, map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": ""}, 403},
		{"Origin null", good, map[string]string{"Origin": "null", "Sec-Fetch-Site": ""}, 403},
		{"another port of the same host", good, map[string]string{"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": ""}, 403},
		{"no Origin and no Referer", good, map[string]string{"Origin": "", "Sec-Fetch-Site": ""}, 403},
		{"Sec-Fetch-Site cross-site", good, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"Sec-Fetch-Site same-site", good, map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"enctype=text/plain", good, map[string]string{"Content-Type": "text/plain"}, 415},
		{"a JSON body", good, map[string]string{"Content-Type": "application/json"}, 415},
		{"a form said to be compressed", good, map[string]string{"Content-Encoding": "gzip"}, 415},
	} {
		r := cc.post("/login", c.form, c.hdr)
		if r.status != c.status || len(r.setCookies("pgwarden_session")) != 0 {
			t.Fatalf("login with %s: %d, want %d (cookies %v)", c.why, r.status, c.status, r.header.Values("Set-Cookie"))
		}
	}
	if r := cc.postMultipart("/login", good); r.status != 415 {
		t.Fatalf("multipart login: %d", r.status)
	}
	// A Referer of the same origin stands in for a missing Origin.
	if r := cc.post("/login", good, map[string]string{"Origin": "", "Referer": g.httpURL() + "/"}); r.status != http.StatusSeeOther {
		t.Fatalf("login with a same-origin Referer and no Origin: %d", r.status)
	}
	csrf := cc.consoleCSRF()

	// Cookie-authenticated /_sql calls need the token and the origin.
	if err := pg.Exec("DROP TABLE IF EXISTS csrf_t; CREATE TABLE csrf_t (n int); GRANT ALL ON csrf_t TO alice"); err != nil {
		t.Fatal(err)
	}
	insert := "INSERT INTO csrf_t VALUES (1)"
	for _, c := range []struct {
		why    string
		csrf   string
		hdr    map[string]string
		status int
	}{
		{"no CSRF header", "", nil, 403},
		{"a wrong CSRF header", csrf[:len(csrf)-2] + "xx", nil, 403},
		{"another site's Origin", csrf, map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, 403},
		{"no Origin", csrf, map[string]string{"Origin": "", "Sec-Fetch-Site": ""}, 403},
		{"a text/plain body", csrf, map[string]string{"Content-Type": "text/plain"}, 415},
	} {
		status, _, out := cc.sql("postgres", insert, c.csrf, c.hdr)
		if status != c.status {
			t.Fatalf("/_sql with %s: %d %v, want %d", c.why, status, out, c.status)
		}
	}
	// GET never runs SQL, on /_sql or on the console page.
	for _, path := range []string{"/_sql?db=postgres&stmt=" + url.QueryEscape(insert), "/?stmt=" + url.QueryEscape(insert)} {
		if r := cc.get(path); r.status == 200 && strings.Contains(path, "_sql") {
			t.Fatalf("GET %s: %d", path, r.status)
		}
	}
	if n := superuserQuery(t, "SELECT count(*) FROM csrf_t"); n != "0" {
		t.Fatalf("a refused request inserted %s rows", n)
	}
	if status, _, _ := cc.sql("postgres", insert, csrf, nil); status != 200 {
		t.Fatalf("the console's own call: %d", status)
	}

	// Logout and password change refuse posts without the session's token.
	for _, path := range []string{"/logout", "/password"} {
		r := cc.post(path, url.Values{"csrf": {form}, "current_password": {"alice-Pass-1"}, "new_password": {"new-Pass-77"}, "new_password2": {"new-Pass-77"}}, nil)
		if r.status != 403 {
			t.Fatalf("%s with the pre-login token: %d", path, r.status)
		}
		r = cc.post(path, url.Values{"csrf": {csrf}}, map[string]string{"Origin": "https://evil.example"})
		if r.status != 403 {
			t.Fatalf("%s from another origin: %d", path, r.status)
		}
	}
	if status, _, _ := cc.sql("postgres", "SELECT 1", csrf, nil); status != 200 {
		t.Fatal("a refused logout ended the session")
	}
	// Explicit credentials win over the cookie, which is then ignored.
	if status, _, out := cc.sql("postgres", "SELECT current_user", "", basic("bob", "bob-Pass-2")); status != 200 || jsonText(t, out["rows"]) != `[["bob"]]` {
		t.Fatalf("Basic with a session cookie present: %d %v", status, out)
	}
}

func TestSessionsAreAcceptedOnlyUnderPasswordRules(t *testing.T) {
	_, cc := startConsoleGateway(t, "")
	csrf := cc.login("alice", "alice-Pass-1")
	for _, db := range []string{"trustdb", "jwtdb"} {
		status, hdr, out := cc.sql(db, "SELECT 1", csrf, nil)
		if status != 401 || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Cookie") || errCode(out) != "28P01" {
			t.Fatalf("session on %s: %d %v %v", db, status, hdr, out)
		}
	}
	if status, _, _ := cc.sql("postgres", "SELECT 1", csrf, nil); status != 200 {
		t.Fatal("a refusal on one database ended the session")
	}
}

func TestLogoutEndsTheSessionServerSide(t *testing.T) {
	g, cc := startConsoleGateway(t, "")
	otherTab := cc.loginForm() // a login form left open in another tab
	csrf := cc.login("alice", "alice-Pass-1")
	id := cc.cookie("pgwarden_session")
	r := cc.post("/logout", url.Values{"csrf": {csrf}}, nil)
	if r.status != http.StatusSeeOther || !strings.Contains(r.header.Get("Location"), "logged-out") {
		t.Fatalf("logout: %d %v", r.status, r.header)
	}
	if c := r.setCookies("pgwarden_session"); len(c) != 1 || !strings.Contains(c[0], "Max-Age=0") {
		t.Fatalf("logout does not clear the cookie: %v", c)
	}
	// The old cookie, replayed, is refused and never falls back to anyone.
	replay := newConsoleClient(t, g.httpURL(), nil)
	replay.setCookie("pgwarden_session", id)
	status, hdr, out := replay.sql("postgres", "SELECT 1", csrf, nil)
	if status != 401 || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Cookie") || strings.Contains(jsonText(t, out), "alice") {
		t.Fatalf("replayed cookie after logout: %d %v %v", status, hdr, out)
	}
	if r := replay.get("/"); !strings.Contains(r.body, `action="/login"`) || !strings.Contains(r.body, "Your session ended") {
		t.Fatalf("GET / with the old cookie:\n%s", r.body)
	}
	// The form of the other tab still logs in, under yet another id.
	r = cc.post("/login", url.Values{"csrf": {otherTab}, "user": {"alice"}, "password": {"alice-Pass-1"}}, nil)
	if r.status != http.StatusSeeOther || cc.cookie("pgwarden_session") == id {
		t.Fatalf("login from a form loaded before the last login: %d", r.status)
	}
}

func TestPasswordChangeInTheConsole(t *testing.T) {
	g, cc := startConsoleGateway(t, "")
	csrf := cc.login("alice", "alice-Pass-1")
	second := newConsoleClient(t, g.httpURL(), nil)
	csrf2 := second.login("alice", "alice-Pass-1")
	wire := g.mustConnect("alice", "alice-Pass-1", "postgres")
	change := func(current, next, again string) consoleResponse {
		noteSecret(next)
		return cc.post("/password", url.Values{"csrf": {csrf}, "current_password": {current}, "new_password": {next}, "new_password2": {again}}, nil)
	}
	for _, c := range []struct{ current, next, again, want string }{
		{"wrong-password", "brand-New-Pass-9", "brand-New-Pass-9", "The current password is wrong."},
		{"alice-Pass-1", "brand-New-Pass-9", "brand-New-Pass-8", "The new passwords do not match."},
		{"alice-Pass-1", "short", "short", "password too short: 5 characters, users.password_min_length is 8"},
	} {
		r := change(c.current, c.next, c.again)
		if r.status != 400 || !strings.Contains(firstMatch(t, formErrorRE, r.body), c.want) || !strings.Contains(r.body, "<details id=\"password-section\" open>") {
			t.Fatalf("change %+v: %d\n%s", c, r.status, r.body)
		}
	}
	r := change("alice-Pass-1", "brand-New-Pass-9", "brand-New-Pass-9")
	if r.status != http.StatusSeeOther || !strings.Contains(r.header.Get("Location"), "password-changed") {
		t.Fatalf("password change: %d %v\n%s", r.status, r.header, r.body)
	}
	// Every session of alice ended: this one, the other browser's, and
	// her Postgres session.
	if status, _, _ := second.sql("postgres", "SELECT 1", csrf2, nil); status != 401 {
		t.Fatalf("alice's other session survived the change: %d", status)
	}
	if r := cc.get(r.header.Get("Location")); !strings.Contains(r.body, `action="/login"`) || !strings.Contains(r.body, "Your password was changed") {
		t.Fatalf("after the change:\n%s", r.body)
	}
	if _, err := wire.Exec(t.Context(), "SELECT 1"); err == nil {
		t.Fatal("alice's wire session survived the password change")
	}
	if r := cc.tryLogin("alice", "alice-Pass-1"); r.status != 401 {
		t.Fatalf("the old password still logs in: %d", r.status)
	}
	cc.login("alice", "brand-New-Pass-9")
	g.mustConnect("alice", "brand-New-Pass-9", "postgres")
	users, _ := os.ReadFile(filepath.Join(g.dir, "users.toml"))
	if strings.Contains(string(users), "brand-New-Pass-9") || !strings.Contains(string(users), "SCRAM-SHA-256$") {
		t.Fatal("the users file does not hold a SCRAM hash of the new password")
	}
}

func TestAdminCLIAndReloadChangesEndSessions(t *testing.T) {
	g, _ := startConsoleGateway(t, "")
	session := func(user, pw string) (*consoleClient, string) {
		cc := newConsoleClient(t, g.httpURL(), nil)
		return cc, cc.login(user, pw)
	}
	works := func(cc *consoleClient, csrf string) bool {
		status, _, _ := cc.sql("postgres", "SELECT 1", csrf, nil)
		return status == 200
	}
	alice, aliceCSRF := session("alice", "alice-Pass-1")
	bob, bobCSRF := session("bob", "bob-Pass-2")
	ops, opsCSRF := session("ops1", "ops1-Pass-6")

	// ALTER USER on the admin console ends alice's sessions, not bob's.
	if _, err := psql(t, g.connString("ops1", "ops1-Pass-6", "pgwarden"), "ALTER USER alice PASSWORD 'admin-Set-Pass-1'"); err != nil {
		t.Fatal(err)
	}
	noteSecret("admin-Set-Pass-1")
	if works(alice, aliceCSRF) || !works(bob, bobCSRF) {
		t.Fatal("ALTER USER: alice's session should end and bob's go on")
	}
	// Disabling bob in the users file, then a reload, ends his.
	data, _ := os.ReadFile(filepath.Join(g.dir, "users.toml"))
	text := strings.Replace(string(data), "name = \"bob\"", "name = \"bob\"\ndisabled = true", 1)
	// (ALTER USER put its change in force without a reload of the files.)
	g.reloadAfter(func() { writeFile(t, filepath.Join(g.dir, "users.toml"), text) })
	if works(bob, bobCSRF) {
		t.Fatal("disabling bob did not end his session")
	}
	// `pgwarden user del` and a reload end ops1's.
	g.reloadAfter(func() {
		if _, stderr, code := runCLI(t, "", "user", "del", "-c", g.configPath(), "ops1"); code != 0 {
			t.Fatal(stderr)
		}
	})
	if works(ops, opsCSRF) {
		t.Fatal("removing ops1 did not end the session")
	}
}

func TestSessionsEndAfterTheIdleAndAbsoluteTimeouts(t *testing.T) {
	_, cc := startConsoleGateway(t, "session_ttl = \"5s\"\nsession_idle_timeout = \"2s\"")
	csrf := cc.login("alice", "alice-Pass-1")
	time.Sleep(2500 * time.Millisecond)
	if status, _, _ := cc.sql("postgres", "SELECT 1", csrf, nil); status != 401 {
		t.Fatalf("a session idle past session_idle_timeout: %d", status)
	}
	csrf = cc.login("alice", "alice-Pass-1")
	start := time.Now()
	for {
		status, _, _ := cc.sql("postgres", "SELECT 1", csrf, nil)
		elapsed := time.Since(start)
		if status != 200 {
			if elapsed < 4*time.Second {
				t.Fatalf("a session in use ended after %v (status %d)", elapsed, status)
			}
			break
		}
		if elapsed > 8*time.Second {
			t.Fatal("a session in use outlived session_ttl")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestTheConsoleCanBeTurnedOff(t *testing.T) {
	g, cc := startConsoleGateway(t, "")
	csrf := cc.login("alice", "alice-Pass-1")
	cfg, _ := os.ReadFile(g.configPath())
	writeFile(t, g.configPath(), strings.Replace(string(cfg), "[http]\n", "[http]\nconsole = false\n", 1))
	g.signal(syscall.SIGHUP)
	g.waitLog(`"msg":"reloaded"`, 1)
	for _, path := range []string{"/", "/setup", "/assets/console.js"} {
		if r := cc.get(path); r.status != 404 {
			t.Fatalf("GET %s with the console off: %d", path, r.status)
		}
	}
	if r := cc.post("/login", url.Values{}, nil); r.status != 404 {
		t.Fatalf("POST /login with the console off: %d", r.status)
	}
	// The cookie is then no credential at all: no default user here, so
	// the call is refused as one without credentials.
	if status, hdr, _ := cc.sql("postgres", "SELECT 1", csrf, nil); status != 401 || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("a session cookie with the console off: %d %v", status, hdr)
	}
}

func TestTheConsoleServesItsOwnAssetsOnly(t *testing.T) {
	_, cc := startConsoleGateway(t, "")
	for path, ctype := range map[string]string{"/assets/console.js": "text/javascript", "/assets/console.css": "text/css"} {
		r := cc.get(path)
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), ctype) || len(r.body) < 500 {
			t.Fatalf("GET %s: %d %q (%d bytes)", path, r.status, r.header.Get("Content-Type"), len(r.body))
		}
	}
	for _, path := range []string{"/assets/../console/page.html", "/assets/page.html", "/nothing", "/index.html"} {
		// ".." is cleaned by a redirect first; either way no template
		// is ever served.
		if r := cc.get(path); r.status == 200 || strings.Contains(r.body, "{{define") {
			t.Fatalf("GET %s: %d", path, r.status)
		}
	}
}

// superuserQuery runs sql on the shared cluster as its superuser and
// returns the one value it answers, as text.
func superuserQuery(t *testing.T, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", pg.sockDir, pg.port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var out string
	if err := conn.QueryRow(ctx, "SELECT ("+sql+")::text").Scan(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// caTLSConfig trusts the CA in file, for HTTPS to localhost.
func caTLSConfig(t *testing.T, file string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

// The database field offers what the session can open: databases the
// backend lets the user's role connect to, whose HBA rule takes a console
// session; not templates, not ones without CONNECT, not trust or jwt ones,
// and a [[databases]] entry's backend database by its entry's name only.
func TestTheConsoleOffersTheDatabasesTheUserMayConnectTo(t *testing.T) {
	for _, stmt := range []string{
		"DROP DATABASE IF EXISTS console_open", "CREATE DATABASE console_open",
		"DROP DATABASE IF EXISTS trustdb", "CREATE DATABASE trustdb",
		"DROP DATABASE IF EXISTS jwtdb", "CREATE DATABASE jwtdb",
		"DROP DATABASE IF EXISTS console_noconnect", "CREATE DATABASE console_noconnect",
		"REVOKE CONNECT ON DATABASE console_noconnect FROM PUBLIC",
	} {
		if err := pg.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		pg.Exec("DROP DATABASE IF EXISTS console_open")
		pg.Exec("DROP DATABASE IF EXISTS trustdb")
		pg.Exec("DROP DATABASE IF EXISTS jwtdb")
		pg.Exec("DROP DATABASE IF EXISTS console_noconnect")
	})
	g := startGatewayWith(t, gwOptions{http: true, httpSection: `default_database = "postgres"`}, consoleRules+`
[[databases]]
name = "app"
backend_dbname = "app_prod"
`, consoleUsers)
	cc := newConsoleClient(t, g.httpURL(), nil)
	cc.login("alice", "alice-Pass-1")
	page := cc.get("/").body
	i := strings.Index(page, `<datalist id="db-list">`)
	if i < 0 {
		t.Fatalf("no database list:\n%s", page)
	}
	list := page[i : i+strings.Index(page[i:], "</datalist>")]
	for _, want := range []string{"postgres", "console_open", "app"} {
		if !strings.Contains(list, `value="`+want+`"`) {
			t.Fatalf("the picker lacks %s: %s", want, list)
		}
	}
	for _, not := range []string{"template0", "template1", "console_noconnect", "trustdb", "jwtdb", "app_prod"} {
		if strings.Contains(list, `value="`+not+`"`) {
			t.Fatalf("the picker offers %s: %s", not, list)
		}
	}
}

// TestAConsolePasswordChangeDoesNotUndoAResetMadeWhileItWaited: the form
// checks the current password against the users in force when the request
// came, after the throttle's wait (which a client can lengthen at will with
// one wrong attempt). An admin who reset the password in that wait, say
// because it was stolen, must not see the change go through with the
// password the reset revoked, and the thief keep the account.
func TestAConsolePasswordChangeDoesNotUndoAResetMadeWhileItWaited(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true, httpSection: "default_database = \"postgres\"\n",
		throttle: "failure_delay = \"1500ms\"\nmax_delay = \"3s\""}, consoleRules, consoleUsers)
	cc := newConsoleClient(t, g.httpURL(), nil)
	csrf := cc.login("alice", "alice-Pass-1")
	change := func(current, next string) consoleResponse {
		noteSecret(next)
		return cc.post("/password", url.Values{"csrf": {csrf}, "current_password": {current}, "new_password": {next}, "new_password2": {next}}, nil)
	}
	if r := change("wrong-Pass-0", "thief-Pass-8"); r.status != 400 {
		t.Fatalf("a wrong current password: %d", r.status)
	}
	done := make(chan consoleResponse, 1)
	go func() { done <- change("alice-Pass-1", "thief-Pass-9") }()
	time.Sleep(300 * time.Millisecond)
	noteSecret("reset-Pass-7")
	if out, err := psql(t, g.connString("ops1", "ops1-Pass-6", "pgwarden"), "ALTER USER alice PASSWORD 'reset-Pass-7'"); err != nil {
		t.Fatalf("ALTER USER: %v\n%s", err, out)
	}
	r := <-done
	if strings.Contains(r.header.Get("Location"), "password-changed") {
		t.Fatalf("a change made with the password the reset revoked went through: %d %v", r.status, r.header)
	}
	if g.logsIn("alice", "thief-Pass-9") || !g.logsIn("alice", "reset-Pass-7") {
		t.Fatal("the reset did not stand")
	}
}

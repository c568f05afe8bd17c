package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/authcore"
)

const setupRules = `
[[hba]]
protocol = "http"
method = "password"

[[hba]]
protocol = "pg"
method = "scram-sha-256"
`

var setupURLRE = regexp.MustCompile(`"setup_url":"([^"]+)"`)

// setupURL waits for the start-up line that carries the setup link.
func (g *gateway) setupURL() *url.URL {
	g.t.Helper()
	g.waitLog(`"setup_url"`, 1)
	m := setupURLRE.FindStringSubmatch(g.log.String())
	u, err := url.Parse(m[1])
	if err != nil {
		g.t.Fatal(err)
	}
	return u
}

// setupForm loads the setup page with token and returns its CSRF token.
func (cc *consoleClient) setupForm(token string) string {
	cc.t.Helper()
	r := cc.get("/setup?token=" + url.QueryEscape(token))
	if r.status != 200 || !strings.Contains(r.body, `action="/setup"`) {
		cc.t.Fatalf("GET /setup: %d\n%s", r.status, r.body)
	}
	return firstMatch(cc.t, csrfFieldRE, r.body)
}

func TestFirstRunSetupCreatesOneAdminThenAnswers404(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true, httpSection: `default_database = "postgres"`}, setupRules,
		[]testUser{{name: "alice", password: "alice-Pass-1"}})
	link := g.setupURL()
	if link.Path != "/setup" || link.Host != strings.TrimPrefix(g.httpURL(), "http://") {
		t.Fatalf("setup link %s", link)
	}
	token := link.Query().Get("token")
	if len(token) < 43 {
		t.Fatalf("setup token %q", token)
	}
	cc := newConsoleClient(t, g.httpURL(), nil)
	for _, bad := range []string{"/setup", "/setup?token=", "/setup?token=" + token[:len(token)-1] + "x"} {
		if r := cc.get(bad); r.status != 403 || strings.Contains(r.body, `action="/setup"`) {
			t.Fatalf("GET %s: %d", bad, r.status)
		}
	}
	csrf := cc.setupForm(token)
	post := func(form url.Values) consoleResponse {
		for _, k := range []string{"password", "password2"} {
			if v := form.Get(k); v != "" {
				noteSecret(v)
			}
		}
		return cc.post("/setup", form, nil)
	}
	good := url.Values{"csrf": {csrf}, "token": {token}, "user": {"ops1"}, "password": {"ops1-Admin-Pass"}, "password2": {"ops1-Admin-Pass"}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for key, vs := range good {
			f[key] = vs
		}
		f.Set(k, v)
		return f
	}
	for _, c := range []struct {
		why    string
		form   url.Values
		status int
		msg    string
	}{
		{"no CSRF token", with("csrf", ""), 403, ""},
		{"a wrong token", with("token", strings.Repeat("A", 43)), 403, ""},
		{"an empty name", with("user", " "), 400, "The user name is empty."},
		{"a name with a control character", with("user", "ops\x01"), 400, "control characters"},
		{"an existing user's name", with("user", "alice"), 400, "exists already"},
		{"passwords that differ", with("password2", "ops1-Admin-Pasz"), 400, "The passwords do not match."},
		{"a short password", func() url.Values { f := with("password", "short"); f.Set("password2", "short"); return f }(), 400, "password too short"},
	} {
		r := post(c.form)
		if r.status != c.status || (c.msg != "" && !strings.Contains(firstMatch(t, formErrorRE, r.body), c.msg)) {
			t.Fatalf("setup with %s: %d\n%s", c.why, r.status, r.body)
		}
	}
	if r := cc.post("/setup", good, map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}); r.status != 403 {
		t.Fatalf("cross-site setup post: %d", r.status)
	}
	if r := cc.post("/setup", good, map[string]string{"Content-Type": "text/plain"}); r.status != 415 {
		t.Fatalf("text/plain setup post: %d", r.status)
	}

	r := post(good)
	if r.status != http.StatusSeeOther || !strings.Contains(r.header.Get("Location"), "setup-done") {
		t.Fatalf("setup: %d %v\n%s", r.status, r.header, r.body)
	}
	us, err := authcore.LoadUsers(filepath.Join(g.dir, "users.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if u := us.Lookup("ops1"); u == nil || !u.HasRole("admin") || u.Hash() == nil || u.Hash().Kind() != "scram-sha-256" {
		t.Fatalf("the users file after setup: %+v", u)
	}
	// The token is spent: /setup is gone, whatever is sent to it.
	for _, path := range []string{"/setup", "/setup?token=" + token} {
		if r := cc.get(path); r.status != 404 {
			t.Fatalf("GET %s after setup: %d", path, r.status)
		}
	}
	if r := post(with("user", "second")); r.status != 404 {
		t.Fatalf("a second setup: %d", r.status)
	}
	// The new admin logs in to the console and to the admin console.
	csrf = newConsoleClient(t, g.httpURL(), nil).login("ops1", "ops1-Admin-Pass")
	if csrf == "" {
		t.Fatal("no console for the new admin")
	}
	if out, err := psql(t, g.connString("ops1", "ops1-Admin-Pass", "pgwarden"), "SHOW USERS"); err != nil || !strings.Contains(out, "ops1") {
		t.Fatalf("admin console as the new admin: %v\n%s", err, out)
	}
}

func TestTwoRacingSetupVisitorsMakeOneAdmin(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true}, setupRules, nil)
	token := g.setupURL().Query().Get("token")
	// Every visitor has the form open before any of them sends it.
	names := []string{"alice", "bob", "carol", "dave"}
	clients := make([]*consoleClient, len(names))
	forms := make([]url.Values, len(names))
	for i, name := range names {
		clients[i] = newConsoleClient(t, g.httpURL(), nil)
		forms[i] = url.Values{"csrf": {clients[i].setupForm(token)}, "token": {token}, "user": {name},
			"password": {"racing-Pass-1"}, "password2": {"racing-Pass-1"}}
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	statuses := make([]int, len(names))
	for i := range names {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			statuses[i] = clients[i].post("/setup", forms[i], nil).status
		}(i)
	}
	close(start)
	wg.Wait()
	noteSecret("racing-Pass-1")
	won := 0
	for _, s := range statuses {
		if s == http.StatusSeeOther {
			won++
		} else if s != 404 {
			t.Fatalf("a losing visitor got %d", s)
		}
	}
	us, err := authcore.LoadUsers(filepath.Join(g.dir, "users.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if won != 1 || us.Len() != 1 {
		t.Fatalf("%d visitors won, %d users stored: %v", won, us.Len(), statuses)
	}
}

func TestNoSetupWhenAnAdminExistsOrTheCLIMakesOne(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true}, setupRules,
		[]testUser{{name: "ops1", password: "ops1-Pass-6", extra: "roles = [\"admin\"]\n"}})
	if strings.Contains(g.log.String(), "setup_url") {
		t.Fatal("a setup link was logged although an admin exists")
	}
	if r := newConsoleClient(t, g.httpURL(), nil).get("/setup?token=x"); r.status != 404 {
		t.Fatalf("GET /setup with an admin: %d", r.status)
	}

	// Without an admin at start, an admin made with the CLI closes setup.
	g = startGatewayWith(t, gwOptions{http: true}, setupRules, nil)
	token := g.setupURL().Query().Get("token")
	cc := newConsoleClient(t, g.httpURL(), nil)
	cc.setupForm(token)
	if _, stderr, code := runCLI(t, "ops1-Pass-6\n", "user", "add", "-c", g.configPath(), "--admin", "--password-stdin", "ops1"); code != 0 {
		t.Fatal(stderr)
	}
	g.signal(syscall.SIGHUP)
	g.waitLog(`"msg":"reloaded"`, 1)
	if r := cc.get("/setup?token=" + url.QueryEscape(token)); r.status != 404 {
		t.Fatalf("GET /setup after the CLI made an admin: %d", r.status)
	}
	data, _ := os.ReadFile(filepath.Join(g.dir, "users.toml"))
	if strings.Count(string(data), "[[user]]") != 1 {
		t.Fatalf("users file:\n%s", data)
	}
}

// A setup link closed by an admin stays closed when the admin goes: the
// token was spent only when /setup was next asked for, so a link that saw
// an admin made with the CLI and removed again opened setup once more.
func TestASetupLinkClosedByAnAdminStaysClosed(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true}, setupRules, nil)
	token := g.setupURL().Query().Get("token")
	if _, stderr, code := runCLI(t, "ops1-Pass-6\n", "user", "add", "-c", g.configPath(), "--admin", "--password-stdin", "ops1"); code != 0 {
		t.Fatal(stderr)
	}
	g.signal(syscall.SIGHUP)
	g.waitLog(`"msg":"reloaded"`, 1)
	if _, stderr, code := runCLI(t, "", "user", "del", "-c", g.configPath(), "ops1"); code != 0 {
		t.Fatal(stderr)
	}
	g.signal(syscall.SIGHUP)
	g.waitLog(`"msg":"reloaded"`, 2)
	if r := newConsoleClient(t, g.httpURL(), nil).get("/setup?token=" + url.QueryEscape(token)); r.status != 404 {
		t.Fatalf("GET /setup with the first link after its admin came and went: %d", r.status)
	}
}

// With the PostgreSQL store the setup token is shared, and it was kept
// there for good: a store whose admins were all removed took the link of
// its first install again, which any log kept since holds. Once an admin
// exists it is deleted, and a later start without one logs a new link.
func TestTheStoreForgetsASpentSetupToken(t *testing.T) {
	freshStore(t)
	rules := storeSection + setupRules
	a := newGateway(t, gwOptions{http: true}, rules)
	a.fillStore(t, []testUser{{name: "alice", password: "alice-Pass-1"}})
	a.start()
	first := a.setupURL().Query().Get("token")
	if _, stderr, code := runCLI(t, "ops1-Pass-6\n", "user", "add", "-c", a.configPath(), "--admin", "--password-stdin", "ops1"); code != 0 {
		t.Fatal(stderr)
	}
	a.waitLog(`"msg":"reloaded"`, 1)
	var n int
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := storeSetupTokens(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n != 0 {
		t.Fatal("the spent setup token is still in the store")
	}
	if _, stderr, code := runCLI(t, "", "user", "del", "-c", a.configPath(), "ops1"); code != 0 {
		t.Fatal(stderr)
	}
	a.waitLog(`"msg":"reloaded"`, 2)
	b := startGatewayWith(t, gwOptions{http: true}, rules, nil)
	second := b.setupURL().Query().Get("token")
	if second == "" || second == first {
		t.Fatalf("a start without an admin took the first install's setup token again")
	}
	for _, g := range []*gateway{a, b} {
		if r := newConsoleClient(t, g.httpURL(), nil).get("/setup?token=" + url.QueryEscape(first)); r.status == 200 {
			t.Fatal("the first install's setup link opens setup again")
		}
	}
	newConsoleClient(t, b.httpURL(), nil).setupForm(second)
}

// storeSetupTokens counts the setup tokens the store holds.
func storeSetupTokens(n *int) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=pgwarden_store_db sslmode=disable", pg.sockDir, pg.port))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, "SELECT count(*) FROM pgwarden.settings WHERE key = 'setup_token'").Scan(n)
}

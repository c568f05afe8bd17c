package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath finds the browser: $PGWARDEN_CHROMIUM, else Debian's
// chromium or a Chrome on PATH. Without one the browser tests skip, except
// under CI, where .ci/run installs it and its absence is a failure.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PGWARDEN_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no Chromium found (install Debian's chromium package, as .ci/run does)")
	}
	t.Skip("browser test skipped: no Chromium found (apt-get install chromium, or set PGWARDEN_CHROMIUM)")
	return ""
}

// browser is one headless Chromium with a fresh profile, and what its
// pages threw.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu     sync.Mutex
	errors []string // uncaught exceptions and console errors of the pages
}

// newBrowser starts Chromium headless, without sandbox (CI runs as root)
// and without the background traffic that a closed network refuses.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &browser{t: t}
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithListener(func(ev any) {
		var msg string
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = "exception: " + e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				msg = "console.error"
			}
		}
		if msg != "" {
			b.mu.Lock()
			b.errors = append(b.errors, msg)
			b.mu.Unlock()
		}
	}))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first run starts the browser and lives as long as ctx: no
	// timeout on it (steps get their own below).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	b.ctx = ctx
	return b
}

// do runs steps within a deadline.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v\npage: %s", err, b.text(chromedp.CSS("body")))
	}
}

// run runs one action that answers a value, within a deadline.
func browserRun[T any](b *browser, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("browser: %v", err)
	}
	return v
}

func (b *browser) text(sel chromedp.CSS) string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Text(sel))
	return s
}

// eval evaluates a JavaScript expression and decodes its JSON value.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	return browserRun(b, chromedp.Evaluate[T](expr))
}

// noPageErrors fails the test if a page threw or logged an error.
func (b *browser) noPageErrors() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errors) > 0 {
		b.t.Fatalf("the pages reported errors: %v", b.errors)
	}
}

// cookie returns the browser's cookie named name for the current page.
func (b *browser) cookie(name string) string {
	b.t.Helper()
	cookies := browserRun(b, func(ctx context.Context, t *chromedp.Target) ([]*network.Cookie, error) {
		res, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{})
		return res.Cookies, err
	})
	for _, c := range cookies {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// login fills and sends the login form on the current page.
func (b *browser) login(user, password string) {
	b.t.Helper()
	noteSecret(password)
	b.do(
		chromedp.WaitVisible(chromedp.ID("user")),
		setField("user", ""),
		chromedp.SendKeys(chromedp.ID("user"), user),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitReady(chromedp.CSS("main h1")),
	)
}

// runSQL types stmt into the SQL box, runs it with the Run button and
// waits for the answer.
func (b *browser) runSQL(stmt string) {
	b.t.Helper()
	b.do(
		setField("stmt", stmt),
		chromedp.Click(chromedp.ID("run")),
		step(chromedp.Poll[bool](`document.getElementById("run").disabled === false && document.getElementById("status").textContent !== "Running…"`)),
	)
}

// setField sets the value of the input with id, as pasting would.
func setField(id, value string) chromedp.Action[chromedp.Void] {
	js, _ := json.Marshal(value)
	return step(chromedp.Evaluate[bool](fmt.Sprintf(`(e => { e.value = %s; e.dispatchEvent(new Event("input", {bubbles: true})); return true })(document.getElementById(%q))`, js, id)))
}

// step runs a, dropping its value, among steps.
func step[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}

// saveScreenshot writes png under the test's temp dir and, when
// PGWARDEN_SCREENSHOT_DIR is set, there too (the temp dir goes with the
// test).
func saveScreenshot(t *testing.T, name string, png []byte) {
	t.Helper()
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot %s is not a PNG", name)
	}
	dirs := []string{t.TempDir()}
	if d := os.Getenv("PGWARDEN_SCREENSHOT_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", p, len(png))
	}
}

// browserQuery shows NULL beside the text "NULL", exact int8 and numeric
// values, json, and enough rows to scroll.
const browserQuery = `SELECT g AS id,
       CASE WHEN g % 2 = 0 THEN NULL ELSE 'row ' || g END AS label,
       'NULL' AS literal,
       9007199254740993::int8 + g - 1 AS big,
       12345678901234567890.123456789::numeric AS exact,
       jsonb_build_object('n', g, 'tags', ARRAY['a', 'b']) AS doc
  FROM generate_series(1, 60) AS g`

func TestConsoleInABrowser(t *testing.T) {
	g, _ := startConsoleGateway(t, "")
	b := newBrowser(t)
	b.do(chromedp.Navigate(g.httpURL() + "/"))

	// A wrong password shows the one generic error, and focus goes back to
	// the password field with the user name kept.
	b.login("alice", "wrong-password")
	b.do(chromedp.WaitVisible(chromedp.ID("form-error")))
	if msg := b.text("#form-error"); !strings.HasPrefix(msg, "Login failed") {
		t.Fatalf("login error: %q", msg)
	}
	if f := eval[string](b, `document.activeElement.id`); f != "password" {
		t.Fatalf("after a failed login the focus is on %q, not the password field", f)
	}
	if v := eval[string](b, `document.getElementById("user").value`); v != "alice" {
		t.Fatalf("the user name field holds %q", v)
	}

	b.login("alice", "alice-Pass-1")
	b.do(chromedp.WaitVisible(chromedp.ID("sql-form")))
	if who := b.text(".who"); who != "Logged in as alice" {
		t.Fatalf("header: %q", who)
	}
	// Every input has a label.
	if unlabelled := eval[[]string](b, `Array.from(document.querySelectorAll("input:not([type=hidden]), textarea"))
		.filter(e => e.labels.length === 0).map(e => e.id)`); len(unlabelled) > 0 {
		t.Fatalf("inputs without a label: %v", unlabelled)
	}

	// A query's rows show as a table: names and types, NULL apart from the
	// text "NULL", numbers digit for digit.
	b.runSQL(browserQuery)
	b.do(chromedp.WaitVisible(chromedp.ID("result-table")))
	heads := eval[[]string](b, `Array.from(document.querySelectorAll("#result-table th")).map(th => th.textContent)`)
	if strings.Join(heads, "|") != "idint4|labeltext|literaltext|bigint8|exactnumeric|docjsonb" {
		t.Fatalf("column heads: %q", heads)
	}
	rows := eval[[][][2]string](b, `Array.from(document.querySelectorAll("#result-table tbody tr"))
		.map(tr => Array.from(tr.cells).map(td => [td.className, td.textContent]))`)
	if len(rows) != 60 {
		t.Fatalf("%d rows shown, want 60", len(rows))
	}
	want := [][2]string{{"num", "2"}, {"null", "NULL"}, {"", "NULL"}, {"num", "9007199254740994"}, {"num", "12345678901234567890.123456789"}, {"", `{"n": 2, "tags": ["a", "b"]}`}}
	if fmt.Sprint(rows[1]) != fmt.Sprint(want) {
		t.Fatalf("row 2:\n got %q\nwant %q", rows[1], want)
	}
	if rows[0][1] != [2]string{"", "row 1"} {
		t.Fatalf("row 1 label: %q", rows[0][1])
	}
	if s := b.text("#status"); !strings.HasPrefix(s, "60 rows in ") {
		t.Fatalf("status: %q", s)
	}
	if !eval[bool](b, `(w => w.scrollHeight > w.clientHeight && getComputedStyle(w).overflowY === "auto")(document.getElementById("table-wrap"))`) {
		t.Fatal("a long result does not scroll in its box")
	}
	png := browserRun(b, chromedp.Screenshot(chromedp.ID("table-wrap"), chromedp.NodeVisible))
	saveScreenshot(t, "result-table.png", png)
	saveScreenshot(t, "console.png", browserRun(b, chromedp.FullScreenshot(100)))

	// The database picker suggests the backend's databases and runs the
	// box on the one chosen.
	b.do(step(chromedp.Poll[bool](`Array.from(document.querySelectorAll("#db-list option")).some(o => o.value === "app_prod")`)),
		setField("db", "app_prod"))
	b.runSQL("SELECT current_database()")
	b.do(chromedp.WaitVisible(chromedp.ID("result-table")))
	if cell := b.text("#result-table tbody td"); cell != "app_prod" {
		t.Fatalf("current_database() after picking app_prod: %q", cell)
	}
	b.do(setField("db", "postgres"))

	// Errors show with their SQLSTATE; Ctrl+Enter runs the box.
	b.do(
		setField("stmt", "SELECT * FROM no_such_table"),
		chromedp.Focus(chromedp.ID("stmt")),
		chromedp.KeyEvent("\r", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.WaitVisible(chromedp.CSS("#error p")),
	)
	if e := b.text("#error"); e != `ERROR 42P01: relation "no_such_table" does not exist` {
		t.Fatalf("error shown: %q", e)
	}
	if eval[bool](b, `document.getElementById("table-wrap").hidden === false`) {
		t.Fatal("the old table still shows beside the error")
	}
	if err := pg.Exec("DROP TABLE IF EXISTS browser_t; CREATE TABLE browser_t (n int); GRANT ALL ON browser_t TO alice"); err != nil {
		t.Fatal(err)
	}
	b.runSQL("INSERT INTO browser_t VALUES (1), (2)")
	if s := b.text("#status"); !strings.HasPrefix(s, "Done: 2 rows affected") {
		t.Fatalf("status of a statement without rows: %q", s)
	}

	// Change the password: the policy is enforced, then every session ends
	// and the new password logs in.
	b.do(chromedp.Click(chromedp.CSS("#password-section summary")),
		chromedp.SendKeys(chromedp.ID("current_password"), "alice-Pass-1"),
		chromedp.SendKeys(chromedp.ID("new_password"), "short"),
		chromedp.SendKeys(chromedp.ID("new_password2"), "short"),
		chromedp.Click(chromedp.ID("change-password")),
		chromedp.WaitVisible(chromedp.ID("form-error")),
	)
	if e := b.text("#form-error"); !strings.Contains(e, "password too short") {
		t.Fatalf("policy error: %q", e)
	}
	noteSecret("alice-New-Pass-2")
	b.do(chromedp.SendKeys(chromedp.ID("current_password"), "alice-Pass-1"),
		chromedp.SendKeys(chromedp.ID("new_password"), "alice-New-Pass-2"),
		chromedp.SendKeys(chromedp.ID("new_password2"), "alice-New-Pass-2"),
		chromedp.Click(chromedp.ID("change-password")),
		chromedp.WaitVisible(chromedp.ID("login-form")),
	)
	if n := b.text(".notice"); !strings.Contains(n, "Your password was changed") {
		t.Fatalf("after the change: %q", n)
	}
	b.login("alice", "alice-Pass-1")
	b.do(chromedp.WaitVisible(chromedp.ID("form-error")))
	b.login("alice", "alice-New-Pass-2")
	b.do(chromedp.WaitVisible(chromedp.ID("sql-form")))

	// Log out: the cookie the browser held is refused from then on.
	cookie := b.cookie("pgwarden_session")
	csrf := eval[string](b, `document.querySelector('meta[name="csrf-token"]').content`)
	if cookie == "" || csrf == "" {
		t.Fatal("no session cookie or CSRF token in the browser")
	}
	replay := newConsoleClient(t, g.httpURL(), nil)
	replay.setCookie("pgwarden_session", cookie)
	if status, _, _ := replay.sql("postgres", "SELECT 1", csrf, nil); status != 200 {
		t.Fatalf("the browser's cookie before logout: %d", status)
	}
	b.do(chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	if n := b.text(".notice"); n != "You are logged out." {
		t.Fatalf("after logout: %q", n)
	}
	if status, _, _ := replay.sql("postgres", "SELECT 1", csrf, nil); status != http.StatusUnauthorized {
		t.Fatalf("the old cookie after logout: %d", status)
	}
	b.noPageErrors()
}

func TestFirstRunSetupInABrowser(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true, httpSection: `default_database = "postgres"`}, setupRules, nil)
	link := g.setupURL().String()
	b := newBrowser(t)
	noteSecret("ops1-Admin-Pass")
	b.do(chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.ID("setup-form")),
		chromedp.SendKeys(chromedp.ID("user"), "ops1"),
		chromedp.SendKeys(chromedp.ID("password"), "ops1-Admin-Pass"),
		chromedp.SendKeys(chromedp.ID("password2"), "ops1-Admin-Pass-typo"),
		chromedp.Click(chromedp.ID("create-admin")),
		chromedp.WaitVisible(chromedp.ID("form-error")),
	)
	if e := b.text("#form-error"); e != "The passwords do not match." {
		t.Fatalf("setup error: %q", e)
	}
	b.do(chromedp.SendKeys(chromedp.ID("password"), "ops1-Admin-Pass"),
		chromedp.SendKeys(chromedp.ID("password2"), "ops1-Admin-Pass"),
		chromedp.Click(chromedp.ID("create-admin")),
		chromedp.WaitVisible(chromedp.ID("login-form")),
	)
	if n := b.text(".notice"); !strings.Contains(n, "administrator was created") {
		t.Fatalf("after setup: %q", n)
	}
	b.login("ops1", "ops1-Admin-Pass")
	b.do(chromedp.WaitVisible(chromedp.ID("sql-form")))
	b.runSQL("SELECT current_user")
	b.do(chromedp.WaitVisible(chromedp.ID("result-table")))
	if cell := b.text("#result-table tbody td"); cell != "ops1" {
		t.Fatalf("current_user: %q", cell)
	}
	// The link is spent.
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(link))
	if err != nil || resp.Status != 404 {
		t.Fatalf("the setup link after setup: %v %v", resp, err)
	}
	b.noPageErrors()
}

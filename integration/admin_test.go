package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/authcore"
)

const adminRules = `
[tokens]

[[hba]]
protocol = "http"
method = "jwt"

[[hba]]
method = "password"
`

func TestAdminConsoleThroughPsql(t *testing.T) {
	const mockSecret = "a-mock-auth-secret-nobody-sees"
	g := startGatewayWith(t, gwOptions{http: true}, adminRules+"\n[users]\nmock_auth_secret = \""+mockSecret+"\"\n", []testUser{
		{name: "root", password: "root-Admin-1", extra: `roles = ["admin"]` + "\n"},
		{name: "alice", password: "alice-Pass-1"},
	})
	admin := g.connString("root", "root-Admin-1", "pgwarden")
	run := func(sql string) string {
		t.Helper()
		out, err := psql(t, admin, sql)
		if err != nil {
			t.Fatalf("%s: %v\n%s", sql, err, out)
		}
		return out
	}
	live := g.mustConnect("alice", "alice-Pass-1", "postgres")
	queryOne(t, live, "SELECT 1")

	if out := run("SHOW USERS"); !strings.Contains(out, "alice||alice|scram-sha-256|false||false|") || strings.Contains(out, "SCRAM-SHA-256$") {
		t.Fatalf("SHOW USERS:\n%s", out)
	}
	if out := run("SHOW HBA"); !strings.Contains(out, "1|http|all|any|all|all|jwt") {
		t.Fatalf("SHOW HBA:\n%s", out)
	}
	if out := run("SHOW CLIENTS"); !strings.Contains(out, "|pg|alice|postgres|127.0.0.1|password|false|") {
		t.Fatalf("SHOW CLIENTS:\n%s", out)
	}
	if out := run("SHOW STATS"); !strings.Contains(out, "pgwarden_auth_attempts_total|method=password,protocol=pg,result=ok|") {
		t.Fatalf("SHOW STATS:\n%s", out)
	}
	if out := run("SHOW CONFIG"); !strings.Contains(out, "backend.password|********") || !strings.Contains(out, "users.mock_auth_secret|********") ||
		strings.Contains(out, backendPassword) || strings.Contains(out, mockSecret) ||
		!strings.Contains(out, "server.admin_database|pgwarden") {
		t.Fatalf("SHOW CONFIG:\n%s", out)
	}
	if out := run("show version;"); !strings.HasPrefix(out, "pgwarden ") {
		t.Fatalf("SHOW VERSION: %s", out)
	}
	if out := run("SHOW POOLS"); !strings.Contains(out, "(all)") {
		t.Fatalf("SHOW POOLS: %s", out)
	}
	run("RELOAD")

	// Users made, changed and dropped from the console.
	noteSecret("carol-First-1")
	noteSecret("carol-Second-2")
	run("CREATE USER carol WITH PASSWORD 'carol-First-1'")
	carol := g.mustConnect("carol", "carol-First-1", "postgres")
	tok := run("CREATE TOKEN carol EXPIRE '3 months'")
	noteSecret(tok)
	status, _, _ := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, bearer(tok))
	if status != 200 {
		t.Fatalf("console token over HTTP: %d", status)
	}
	run("ALTER USER carol PASSWORD 'carol-Second-2'")
	if _, err := carol.Exec(context.Background(), "SELECT 1"); err == nil {
		t.Fatal("a password change did not end carol's session")
	}
	_, err := g.connect("carol", "carol-First-1", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "carol"`)
	g.mustConnect("carol", "carol-Second-2", "postgres")
	if status, _, _ := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, bearer(tok)); status != 401 {
		t.Fatalf("a token outlived a password change: %d", status)
	}
	run("DROP USER carol")
	_, err = g.connect("carol", "carol-Second-2", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "carol"`)

	// KILL ends a client.
	var id string
	for _, line := range strings.Split(run("SHOW CLIENTS"), "\n") {
		if strings.Contains(line, "|alice|") {
			id = strings.SplitN(line, "|", 2)[0]
		}
	}
	run("KILL " + id)
	if _, err := live.Exec(context.Background(), "SELECT 1"); err == nil {
		t.Fatal("KILL did not end the session")
	}

	// Errors: unknown command, bad usage, a failed reload.
	out, err := psql(t, admin, "SHOW NOTHING")
	if err == nil || !strings.Contains(out, "unknown admin command") {
		t.Fatalf("unknown command: %v %s", err, out)
	}
	writeFile(t, g.configPath(), "[server]\nbogus = 1\n")
	out, err = psql(t, admin, "RELOAD")
	if err == nil || !strings.Contains(out, "reload failed") {
		t.Fatalf("failed RELOAD: %v %s", err, out)
	}
	g.mustConnect("alice", "alice-Pass-1", "postgres")

	// A non-admin is refused after authenticating.
	_, err = g.connect("alice", "alice-Pass-1", "pgwarden")
	wantPgError(t, err, "42501", "permission denied for admin console")
}

// Drivers check a connection with a comment or an empty query (pgx's Ping
// sends "-- ping"), which PostgreSQL answers with an empty result: the
// console said "unknown admin command", so a pool of admin connections
// threw each away after a second idle. Comments are spaces anywhere in a
// command, and a query holds one command: two are refused before either
// runs.
func TestDriversPingTheAdminConsoleAndCommentsAreSpaces(t *testing.T) {
	g := startGateway(t, adminRules, []testUser{{name: "root", password: "root-Admin-1", extra: `roles = ["admin"]` + "\n"}})
	ctx := context.Background()
	c := g.mustConnect("root", "root-Admin-1", "pgwarden")
	for i := 0; i < 2; i++ {
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
	}
	for _, q := range []string{"", ";", "/* nothing */"} {
		if _, err := c.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%q: %v", q, err)
		}
	}
	admin := g.connString("root", "root-Admin-1", "pgwarden")
	if out, err := psql(t, admin, "/* which build */ SHOW VERSION -- of this instance"); err != nil || !strings.HasPrefix(out, "pgwarden ") {
		t.Fatalf("SHOW VERSION with comments: %v %s", err, out)
	}
	out, err := psql(t, admin, "CREATE USER dora PASSWORD 'dora-Pass-1'; SHOW USERS")
	if err == nil || !strings.Contains(out, "one command per query") {
		t.Fatalf("two commands in one query: %v %s", err, out)
	}
	if out, err := psql(t, admin, "SHOW USERS"); err != nil || strings.Contains(out, "dora") {
		t.Fatalf("the refused query's first command ran: %v %s", err, out)
	}
}

// pgjdbc sets extra_float_digits and application_name as it connects and
// checks a connection with an empty query: the console answered the SETs
// "unknown admin command", so no JDBC program could connect to it.
func TestJDBCReadsTheAdminConsole(t *testing.T) {
	jar := pgjdbcJar(t)
	g := startGateway(t, adminRules, []testUser{{name: "root", password: "root-Admin-1", extra: `roles = ["admin"]` + "\n"}})
	cmd := exec.Command("java", "-cp", jar, "testdata/jdbc/AdminConsole.java", strconv.Itoa(g.port), "root", "root-Admin-1")
	checkExample(t, cmd, []string{"valid: true", "version: pgwarden ", "clients: 1"})
	if out, err := psql(t, g.connString("root", "root-Admin-1", "pgwarden"), "SET search_path = x"); err == nil || !strings.Contains(out, "keeps no session settings") {
		t.Fatalf("a setting no driver sends was taken: %v %s", err, out)
	}
}

func TestUserCommandsAgainstALiveServer(t *testing.T) {
	g := startGateway(t, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	long := strings.Repeat("ü", 1024)
	noteSecret("bob-Pass-1234")
	_, errOut, code := runCLI(t, "bob-Pass-1234\n", "user", "add", "-c", g.configPath(), "bob", "--password-stdin")
	if code != 0 {
		t.Fatalf("user add: %s", errOut)
	}
	_, errOut, code = runCLI(t, "short\n", "user", "add", "-c", g.configPath(), "carol", "--password-stdin")
	if code != 1 || !strings.Contains(errOut, "password too short: 5 characters") {
		t.Fatalf("policy: %d %s", code, errOut)
	}
	_, errOut, code = runCLI(t, long+"\n", "user", "add", "-c", g.configPath(), "dave", "--password-stdin", "--admin")
	if code != 0 {
		t.Fatalf("1024-character password: %s", errOut)
	}
	// The files are watched too: a reload may come before the SIGHUP, with
	// only some of the changes. Wait for the one that has them all.
	g.signal(syscall.SIGHUP)
	g.waitLog(`"msg":"reloaded","rules":2,"users":3`, 1)
	g.mustConnect("bob", "bob-Pass-1234", "postgres")
	g.mustConnect("dave", long, "postgres")
	_, err := g.connect("dave", long[:len(long)-2], "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "dave"`)

	noteSecret("bob-New-56789")
	if _, e, c := runCLI(t, "bob-New-56789\n", "user", "passwd", "-c", g.configPath(), "bob", "--password-stdin"); c != 0 {
		t.Fatal(e)
	}
	if _, e, c := runCLI(t, "", "user", "del", "-c", g.configPath(), "alice"); c != 0 {
		t.Fatal(e)
	}
	out, _, _ := runCLI(t, "", "user", "list", "-c", g.configPath())
	if !strings.Contains(out, "bob") || !strings.Contains(out, "[admin]") || strings.Contains(out, "alice") {
		t.Fatalf("user list:\n%s", out)
	}
	g.signal(syscall.SIGHUP)
	g.waitLog(`"msg":"reloaded","rules":2,"users":2`, 1)
	g.mustConnect("bob", "bob-New-56789", "postgres")
	_, err = g.connect("alice", "alice-Pass-1", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "alice"`)
	if st, _ := os.Stat(filepath.Join(g.dir, "users.toml")); st.Mode().Perm() != 0o600 {
		t.Fatalf("users file mode %v", st.Mode().Perm())
	}
}

func TestConcurrentUserAddsAllLand(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users.toml"), "")
	cfg := filepath.Join(dir, "config.toml")
	writeFile(t, cfg, "[[hba]]\nmethod = \"trust\"\n")
	var wg sync.WaitGroup
	const n = 16
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, e, c := runCLI(t, "concurrent-pass\n", "user", "add", "-c", cfg, fmt.Sprintf("u%02d", i), "--password-stdin", "--algo", "bcrypt"); c != 0 {
				t.Error(e)
			}
		}(i)
	}
	wg.Wait()
	us, err := authcore.LoadUsers(filepath.Join(dir, "users.toml"))
	if err != nil || us.Len() != n {
		t.Fatalf("%d of %d users landed: %v", us.Len(), n, err)
	}
}

func TestKilledWritersNeverTearTheUsersFile(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.toml")
	writeFile(t, users, "")
	cfg := filepath.Join(dir, "config.toml")
	writeFile(t, cfg, "[[hba]]\nmethod = \"trust\"\n")
	for i := 0; i < 25; i++ {
		cmd := exec.Command(cliBin, "user", "add", "-c", cfg, fmt.Sprintf("k%02d", i), "--password-stdin", "--algo", "argon2id")
		cmd.Stdin = strings.NewReader("killed-writer-pass\n")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i%8) * 4 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if _, err := authcore.LoadUsers(users); err != nil {
			t.Fatalf("after kill %d the users file does not parse: %v", i, err)
		}
	}
}

// psql's \password hashes the new password itself (SHOW
// password_encryption, then ALTER USER with a SCRAM-SHA-256 verifier), as
// it does against PostgreSQL: the verifier is stored, the new password logs
// in, the old one and the user's sessions end. A verifier pgwarden cannot
// use (MD5, over max_scram_iterations, malformed) is refused, never taken
// for the password itself.
func TestPsqlsPasswordCommandOnTheAdminConsole(t *testing.T) {
	g := startGateway(t, passwordRules, []testUser{
		{name: "root", password: "root-Admin-1", extra: `roles = ["admin"]` + "\n"},
		{name: "alice", password: "alice-Pass-1"},
	})
	noteSecret("alice-Psql-New-2")
	live := g.mustConnect("alice", "alice-Pass-1", "postgres")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", g.connString("root", "root-Admin-1", "pgwarden"), "-c", `\password alice`)
	// No controlling terminal: psql then reads the new password from stdin.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdin = strings.NewReader("alice-Psql-New-2\nalice-Psql-New-2\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf(`psql \password: %v: %s`, err, out)
	}
	users, err := os.ReadFile(filepath.Join(g.dir, "users.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(users), `"SCRAM-SHA-256$4096:`) {
		t.Fatalf("psql's verifier is not what was stored:\n%s", users)
	}
	g.mustConnect("alice", "alice-Psql-New-2", "postgres")
	_, err = g.connect("alice", "alice-Pass-1", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "alice"`)
	if _, err := live.Exec(context.Background(), "SELECT 1"); err == nil {
		t.Fatal(`\password did not end alice's session`)
	}

	admin := g.connString("root", "root-Admin-1", "pgwarden")
	for _, pw := range []string{
		"md5" + strings.Repeat("a", 32),
		"SCRAM-SHA-256$9999999:c2FsdA==$" + strings.Repeat("A", 43) + "=:" + strings.Repeat("A", 43) + "=",
		"SCRAM-SHA-256$x",
	} {
		if out, err := psql(t, admin, "ALTER USER alice PASSWORD '"+pw+"'"); err == nil || !strings.Contains(out, "ERROR") {
			t.Fatalf("%s: accepted: %s", pw, out)
		}
	}
	g.mustConnect("alice", "alice-Psql-New-2", "postgres")
}

package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestAuthQueryLookupWithPostgresOwnVerifiers(t *testing.T) {
	noteSecret("aq-Pass-1")
	noteSecret("evil-password")
	if err := pg.Exec(`DROP ROLE IF EXISTS aq_user; CREATE ROLE aq_user LOGIN PASSWORD 'aq-Pass-1';
		DROP SCHEMA IF EXISTS evil CASCADE; CREATE SCHEMA evil; GRANT USAGE ON SCHEMA evil TO PUBLIC;
		CREATE TABLE evil.pg_shadow (usename name, passwd text); GRANT SELECT ON evil.pg_shadow TO PUBLIC;
		INSERT INTO evil.pg_shadow SELECT 'aq_user', rolpassword FROM pg_authid WHERE rolname = 'alice'`); err != nil {
		t.Fatal(err)
	}
	// alice's backend verifier is for backendPassword: the evil table
	// claims aq_user's password is that.
	g := startGatewayWith(t, gwOptions{noSharedPassword: true, backend: `password = "aq-Pass-1"`}, fmt.Sprintf(`
[auth_query]
mode = "lookup"
query = "SELECT passwd FROM pg_shadow WHERE usename = $1"
database = "postgres"
user = "postgres"
password = %q

[[hba]]
user = "aq_user"
database = "app_prod"
method = "password"

[[hba]]
method = "scram-sha-256"
`, backendPassword), []testUser{{name: "alice", password: "alice-Pass-1", extra: fmt.Sprintf("backend_password = %q\n", backendPassword)}})
	// SCRAM on the wire against PostgreSQL's own verifier.
	c := g.mustConnectString(g.connString("aq_user", "aq-Pass-1", "postgres"))
	if got := queryOne(t, c, "SELECT current_user"); got != "aq_user" {
		t.Fatal(got)
	}
	// Cleartext against the same verifier.
	g.mustConnect("aq_user", "aq-Pass-1", "app_prod")
	// Wrong password and unknown users: the one failure.
	_, err := g.connect("aq_user", "wrong-password", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "aq_user"`)
	_, err = g.connect("nobody_anywhere", "aq-Pass-1", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "nobody_anywhere"`)
	// The users file still comes first.
	g.mustConnect("alice", "alice-Pass-1", "postgres")
	// A client's search_path never reaches the auth query: evil.pg_shadow
	// is not consulted.
	_, err = g.connectString(g.connString("aq_user", backendPassword, "postgres") + " search_path=evil,pg_catalog")
	wantPgError(t, err, "28P01", `password authentication failed for user "aq_user"`)
}

func TestAuthQueryVerifyModeWithPgcrypto(t *testing.T) {
	noteSecret("crypt-Pass-9")
	if err := pg.Exec(`CREATE EXTENSION IF NOT EXISTS pgcrypto;
		DROP TABLE IF EXISTS app_users; CREATE TABLE app_users (name text PRIMARY KEY, pw_hash text);
		INSERT INTO app_users VALUES ('eve', crypt('crypt-Pass-9', gen_salt('bf', 6)))`); err != nil {
		t.Skipf("pgcrypto is not available: %v", err)
	}
	g := startGateway(t, fmt.Sprintf(`
[auth_query]
mode = "verify"
query = "SELECT 1 FROM app_users WHERE name = $1 AND pw_hash = crypt($2, pw_hash)"
database = "postgres"
user = "postgres"
password = %q

[[hba]]
method = "password"
`, backendPassword), nil)
	c := g.mustConnect("eve", "crypt-Pass-9", "postgres")
	if got := queryOne(t, c, "SELECT current_user"); got != "eve" {
		t.Fatal(got)
	}
	// A password that is SQL stays a parameter.
	for _, pw := range []string{"wrong-password", "' OR '1'='1", "x') OR true --"} {
		cfg, _ := pgx.ParseConfig(g.connString("eve", "", "postgres"))
		cfg.Password = pw
		_, err := pgx.ConnectConfig(context.Background(), cfg)
		wantPgError(t, err, "28P01", `password authentication failed for user "eve"`)
	}
}

// PostgreSQL refuses a password login once the role's VALID UNTIL has
// passed; through auth_query's default lookup pgwarden must refuse it too,
// on every path a password takes (SCRAM, cleartext, HTTP Basic), and
// notice a change made after a successful login.
func TestAuthQueryRefusesARoleWhosePasswordExpired(t *testing.T) {
	noteSecret("exp-Pass-1")
	if err := pg.Exec(`DROP ROLE IF EXISTS aq_exp; CREATE ROLE aq_exp LOGIN PASSWORD 'exp-Pass-1' VALID UNTIL 'infinity'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Exec("DROP ROLE IF EXISTS aq_exp") })
	g := startGatewayWith(t, gwOptions{http: true, noSharedPassword: true, backend: `password = "exp-Pass-1"`}, fmt.Sprintf(`
[auth_query]
database = "postgres"
user = "postgres"
password = %q

[[hba]]
database = "app_prod"
method = "password"

[[hba]]
method = "scram-sha-256"
`, backendPassword), nil)
	scram := g.connString("aq_exp", "exp-Pass-1", "postgres")
	basicSQL := func() int {
		t.Helper()
		code, _, _ := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, basic("aq_exp", "exp-Pass-1"))
		return code
	}
	// VALID UNTIL infinity, then a date to come: valid.
	closeAndWait(g.mustConnectString(scram))
	if err := pg.Exec(`ALTER ROLE aq_exp VALID UNTIL '2999-01-01'`); err != nil {
		t.Fatal(err)
	}
	closeAndWait(g.mustConnectString(scram))
	closeAndWait(g.mustConnect("aq_exp", "exp-Pass-1", "app_prod"))
	if code := basicSQL(); code != http.StatusOK {
		t.Fatalf("Basic before expiry: %d", code)
	}

	if err := pg.Exec(`ALTER ROLE aq_exp VALID UNTIL '2001-01-01'`); err != nil {
		t.Fatal(err)
	}
	_, err := g.connectString(scram)
	wantPgError(t, err, "28P01", `password authentication failed for user "aq_exp"`)
	_, err = g.connect("aq_exp", "exp-Pass-1", "app_prod")
	wantPgError(t, err, "28P01", `password authentication failed for user "aq_exp"`)
	if code := basicSQL(); code != http.StatusUnauthorized {
		t.Fatalf("Basic after expiry: %d, want 401", code)
	}
	g.waitLog(`"reason":"user expired (valid_until passed)"`, 3)

	// Given a new date, the role logs in again.
	if err := pg.Exec(`ALTER ROLE aq_exp VALID UNTIL 'infinity'`); err != nil {
		t.Fatal(err)
	}
	closeAndWait(g.mustConnectString(scram))
}

// With [backend] passthrough, a client that proved itself with SCRAM
// against PostgreSQL's own verifier (auth_query) is logged in to the
// backend with the keys its proof carried, as PgBouncer's SCRAM
// pass-through does: no backend password is configured anywhere, and
// nobody's password is known to pgwarden. Keys proved against another
// verifier are not sent (the backend's differs), and a password changed in
// PostgreSQL takes effect at once.
func TestSCRAMPassthroughLogsInWithTheClientsOwnKeys(t *testing.T) {
	for _, s := range []string{"sp-Pass-1", "sp-Pass-2", "other-Pass-1"} {
		noteSecret(s)
	}
	for _, q := range []string{`DROP ROLE IF EXISTS sp_user`, `CREATE ROLE sp_user LOGIN PASSWORD 'sp-Pass-1'`,
		`DROP DATABASE IF EXISTS sp_db`, `CREATE DATABASE sp_db`} {
		if err := pg.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	g := startGatewayWith(t, gwOptions{noSharedPassword: true, backend: `passthrough = true`}, fmt.Sprintf(`
[auth_query]
user = "postgres"
password = %q

[[hba]]
method = "scram-sha-256"
`, backendPassword), []testUser{{name: "sp_file", password: "other-Pass-1", extra: "backend_user = \"sp_user\"\n"}})
	for i := 0; i < 2; i++ { // a new backend, then the parked one
		c := g.mustConnect("sp_user", "sp-Pass-1", "postgres")
		if got := queryOne(t, c, "SELECT current_user"); got != "sp_user" {
			t.Fatalf("logged in as %q", got)
		}
		c.Close(context.Background())
	}
	// A new backend login (another database) with the same keys.
	c := g.mustConnect("sp_user", "sp-Pass-1", "template1")
	if got := queryOne(t, c, "SELECT current_user || '@' || current_database()"); got != "sp_user@template1" {
		t.Fatalf("logged in as %q", got)
	}
	c.Close(context.Background())

	// sp_file's keys come from the users file's verifier, not the role's:
	// nothing is sent, and the client hears why. (In a database where no
	// sp_user backend is parked: a parked one would serve any user
	// mapped to sp_user, as it serves with any other backend password.)
	_, err := g.connect("sp_file", "other-Pass-1", "app_prod")
	wantPgError(t, err, "28P01", `the backend refused pgwarden's login as role "sp_user"`)
	if pe := pgError(t, err); !strings.Contains(pe.Detail, `SCRAM verifier for role "sp_user" is not the one pgwarden checked`) {
		t.Fatalf("detail: %q", pe.Detail)
	}

	// A password changed in PostgreSQL: the old one is refused, the new
	// one logs in (a new backend: the database was not used before).
	if err := pg.Exec(`ALTER ROLE sp_user PASSWORD 'sp-Pass-2'`); err != nil {
		t.Fatal(err)
	}
	_, err = g.connect("sp_user", "sp-Pass-1", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "sp_user"`)
	c = g.mustConnect("sp_user", "sp-Pass-2", "sp_db")
	if got := queryOne(t, c, "SELECT current_user"); got != "sp_user" {
		t.Fatalf("logged in as %q", got)
	}
	c.Close(context.Background())
}

// TestAuthQueryLooksUpAfterItsPooledConnectionWasTerminated: a lookup on a
// pooled connection whose backend ended while idle (a restart,
// pg_terminate_backend) runs on a fresh one; it used to fail the login of
// a user with the right password.
func TestAuthQueryLooksUpAfterItsPooledConnectionWasTerminated(t *testing.T) {
	noteSecret("aq-Pass-2")
	if err := pg.Exec(`DROP ROLE IF EXISTS aq_one; CREATE ROLE aq_one LOGIN PASSWORD 'aq-Pass-2';
		DROP ROLE IF EXISTS aq_two; CREATE ROLE aq_two LOGIN PASSWORD 'aq-Pass-2'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Exec("DROP ROLE IF EXISTS aq_one; DROP ROLE IF EXISTS aq_two") })
	g := startGatewayWith(t, gwOptions{noSharedPassword: true, backend: `password = "aq-Pass-2"`}, fmt.Sprintf(`
[auth_query]
mode = "lookup"
database = "postgres"
user = "postgres"
password = %q

[[hba]]
method = "password"
`, backendPassword), nil)
	c := g.mustConnect("aq_one", "aq-Pass-2", "postgres")
	c.Close(context.Background())
	if err := pg.Exec("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = 'pgwarden-auth-query'"); err != nil {
		t.Fatal(err)
	}
	c = g.mustConnect("aq_two", "aq-Pass-2", "postgres")
	if got := queryOne(t, c, "SELECT current_user"); got != "aq_two" {
		t.Fatal(got)
	}
}

// A "+group" entry means, in PostgreSQL, the roles that are members of the
// group, directly or through other roles (a superuser counts only when it
// is one: PostgreSQL's HBA does not treat superusers as members of every
// role), and "samerole" a database named like such a group. For names of
// the users file pgwarden reads the file's roles; a name found through
// auth_query is a PostgreSQL role, and its memberships are PostgreSQL's.
// Before December 2026 such a name held no role at all, so a pg_hba.conf
// copied with its "+admins reject" line let the admins in through the
// rules below it, on the wire and over HTTP.
func TestAGroupRuleSeesTheMembershipsOfAnAuthQueryRole(t *testing.T) {
	noteSecret("grp-Pass-1")
	if err := pg.Exec(`DROP ROLE IF EXISTS grp_admin, grp_plain, grp_super, grp_ops, grp_admins;
		CREATE ROLE grp_admins NOLOGIN; CREATE ROLE grp_ops NOLOGIN IN ROLE grp_admins;
		CREATE ROLE grp_admin LOGIN PASSWORD 'grp-Pass-1' IN ROLE grp_ops;
		CREATE ROLE grp_plain LOGIN PASSWORD 'grp-Pass-1';
		CREATE ROLE grp_super LOGIN SUPERUSER PASSWORD 'grp-Pass-1'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Exec("DROP ROLE IF EXISTS grp_admin, grp_plain, grp_super, grp_ops, grp_admins") })
	g := startGatewayWith(t, gwOptions{http: true, noSharedPassword: true, backend: `password = "grp-Pass-1"`}, fmt.Sprintf(`
[auth_query]
database = "postgres"
user = "postgres"
password = %q

[[hba]]
user = "+grp_admins"
method = "reject"

[[hba]]
database = "samerole"
method = "reject"

[[hba]]
method = "scram-sha-256"
`, backendPassword), []testUser{{name: "alice", password: "alice-Pass-1", extra: fmt.Sprintf("backend_password = %q\n", backendPassword)}})

	// A member through grp_ops is refused by the group's rule, on the wire
	// and over HTTP.
	_, err := g.connect("grp_admin", "grp-Pass-1", "postgres")
	wantPgError(t, err, "28000", `HBA rejects connection for host "127.0.0.1", user "grp_admin", database "postgres", SSL off`)
	if code, body, _ := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, basic("grp_admin", "grp-Pass-1")); code != http.StatusForbidden {
		t.Fatalf("HTTP as a member of the group: %d %s, want 403", code, body)
	}
	// samerole: a database named like a group the role is a member of.
	_, err = g.connect("grp_plain", "grp-Pass-1", "grp_admins")
	if err == nil || !strings.Contains(err.Error(), "3D000") {
		t.Fatalf("grp_plain is no member of grp_admins, so samerole does not match it and the backend answers: %v", err)
	}
	_, err = g.connect("grp_admin", "grp-Pass-1", "grp_ops")
	wantPgError(t, err, "28000", `HBA rejects connection for host "127.0.0.1", user "grp_admin", database "grp_ops", SSL off`)
	// Not members: a plain role, and a superuser (as in PostgreSQL).
	for _, name := range []string{"grp_plain", "grp_super"} {
		c := g.mustConnect(name, "grp-Pass-1", "postgres")
		if got := queryOne(t, c, "SELECT current_user"); got != name {
			t.Fatal(got)
		}
		closeAndWait(c)
	}
	// A membership granted now counts at the next login.
	if err := pg.Exec(`GRANT grp_admins TO grp_plain`); err != nil {
		t.Fatal(err)
	}
	_, err = g.connect("grp_plain", "grp-Pass-1", "postgres")
	wantPgError(t, err, "28000", `HBA rejects connection for host "127.0.0.1", user "grp_plain", database "postgres", SSL off`)
	// The users file's own roles still decide for its users.
	closeAndWait(g.mustConnect("alice", "alice-Pass-1", "postgres"))
}

// authQueryLoginRules ask for a cleartext password on the wire for
// database db_cleartext, SCRAM for the others, and a password over HTTP.
const authQueryLoginRules = `
[[hba]]
database = ["db_cleartext"]
method = "password"

[[hba]]
protocol = "pg"
method = "scram-sha-256"

[[hba]]
protocol = "http"
method = "password"
`

// A reload retires the snapshot logins in flight were judged by, and with
// it that snapshot's [auth_query] pool: until December 2026 the pool was
// closed at once, so a login that had not yet run its lookup (or read its
// memberships) failed with "auth_query failed: ... closed pool", told
// 28P01 for the right password, and counted by the throttle. A server
// whose users change often (the PostgreSQL store reloads on every change,
// any instance's) refused some right passwords all day. Here logins with
// the right password (wire cleartext and SCRAM, HTTP Basic) run while the
// server reloads every few milliseconds: none may fail.
func TestLoginsThroughAuthQueryDuringReloadsAreNotRefused(t *testing.T) {
	noteSecret("aqr-Pass-7")
	if err := pg.Exec(`DROP ROLE IF EXISTS aqr_user; CREATE ROLE aqr_user LOGIN PASSWORD 'aqr-Pass-7'`); err != nil {
		t.Fatal(err)
	}
	g := startGatewayWith(t, gwOptions{noSharedPassword: true, backend: `passthrough = true`, http: true},
		fmt.Sprintf("\n[auth_query]\ndatabase = \"postgres\"\nuser = \"postgres\"\npassword = %q\n", backendPassword)+authQueryLoginRules, nil)
	stop := make(chan struct{})
	reloads := make(chan int)
	go func() {
		n := 0
		defer func() { reloads <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(5+n%10) * time.Millisecond):
			}
			g.cmd.Process.Signal(syscall.SIGHUP)
			n++
		}
	}()
	const workers, each = 4, 40
	var failed atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(90 * time.Second)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each && time.Now().Before(deadline); i++ {
				if w == 3 {
					// HTTP Basic: a lookup, then the password checked.
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					status, body, err := postSQL(ctx, http.DefaultClient, g.httpURL()+"/_sql?db=postgres", map[string]any{"stmt": "SELECT 1"}, basicAuth("aqr_user", "aqr-Pass-7"))
					cancel()
					if err != nil || status != 200 {
						failed.Add(1)
						t.Errorf("HTTP request %d during reloads: %d %s %v", i, status, body, err)
					}
					continue
				}
				// Cleartext (a lookup, then the password checked) and
				// SCRAM (a lookup before the exchange) in turn.
				db := []string{"db_cleartext", "postgres"}[i%2]
				c, err := g.connect("aqr_user", "aqr-Pass-7", db)
				if err != nil {
					if !strings.Contains(err.Error(), "3D000") { // db_cleartext does not exist: after the login
						failed.Add(1)
						t.Errorf("login %d to %s during reloads: %v", i, db, err)
					}
					continue
				}
				c.Close(context.Background())
			}
		}()
	}
	wg.Wait()
	close(stop)
	n := <-reloads
	t.Logf("%d logins (%d over HTTP), %d reloads meanwhile, %d refused", workers*each, each, n, failed.Load())
	if n < 20 {
		t.Errorf("only %d reloads: the logins did not race them", n)
	}
}

// A credential the store cannot be asked about is not a wrong password:
// while [auth_query] cannot run (its role cannot log in, the backend is
// down), a login of a database-held user is refused 57P03 (HTTP 503) as
// when memberships cannot be read, and feeds no throttle, so once the
// store answers the user gets in at once. Until December 2026 it was
// 28P01 "password authentication failed" for the right password, and each
// such refusal held the user's next attempt back by failure_delay.
func TestAnAuthQueryThatCannotRunRefusesAsUnavailable(t *testing.T) {
	noteSecret("aqd-Pass-3")
	if err := pg.Exec(`DROP ROLE IF EXISTS aqd_user; CREATE ROLE aqd_user LOGIN PASSWORD 'aqd-Pass-3'`); err != nil {
		t.Fatal(err)
	}
	rules := authQueryLoginRules
	broken := "\n[auth_query]\ndatabase = \"postgres\"\nuser = \"pgw_no_such_role\"\n" + rules
	g := startGatewayWith(t, gwOptions{noSharedPassword: true, backend: `passthrough = true`, http: true,
		throttle: "failure_delay = \"60s\"\nmax_delay = \"60s\""}, broken, nil)
	for round := 0; round < 2; round++ {
		_, err := g.connect("aqd_user", "aqd-Pass-3", "db_cleartext")
		wantPgError(t, err, "57P03", "the user store is unreachable: logins are refused until it answers again")
		_, err = g.connect("aqd_user", "aqd-Pass-3", "postgres")
		wantPgError(t, err, "57P03", "the user store is unreachable: logins are refused until it answers again")
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, basic("aqd_user", "aqd-Pass-3"))
		if status != 503 || errCode(out) != "57P03" {
			t.Fatalf("HTTP while auth_query cannot run: %d %v", status, out)
		}
	}
	if !strings.Contains(g.log.String(), `auth_query failed`) {
		t.Fatal("the audit log does not say why")
	}
	// The store answers again: no throttle holds the user back (each
	// refusal above would have cost a minute's wait).
	g.reloadAfter(func() {
		g.writeConfig(fmt.Sprintf("\n[auth_query]\ndatabase = \"postgres\"\nuser = \"postgres\"\npassword = %q\n", backendPassword) + rules)
	})
	c, err := g.connect("aqd_user", "aqd-Pass-3", "postgres")
	if err != nil {
		t.Fatalf("login once auth_query runs again: %v", err)
	}
	c.Close(context.Background())
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT current_user"}`, basic("aqd_user", "aqd-Pass-3"))
	if status != 200 {
		t.Fatalf("HTTP once auth_query runs again: %d %v", status, out)
	}
}

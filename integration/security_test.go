package integration

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/config"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Regression tests of the adversarial review: each is named after what it
// proves.

const replicationRejectRules = `
[[hba]]
database = ["replication"]
method = "reject"

[[hba]]
method = "password"
`

func TestEveryBooleanFormOfReplicationMeetsTheReplicationRule(t *testing.T) {
	g := startGateway(t, replicationRejectRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	for _, v := range []string{"t", "tr", "TRU", "true", "y", "Ye", "yes", "on", "ON", "1"} {
		r := dialRaw(t, g.addr())
		r.write(startupBytes(3, 0, "user", "alice", "database", "postgres", "replication", v))
		r.expectError("28000", `HBA rejects connection for host "127.0.0.1", user "alice", database "postgres", SSL off`)
	}
	// psql as a user would type it.
	out, err := psql(t, g.connString("alice", "alice-Pass-1", "postgres")+" replication=t", "IDENTIFY_SYSTEM")
	if err == nil {
		t.Fatalf("psql replication=t got a walsender: %s", out)
	}
}

func TestAReplicationValuePostgreSQLWouldRefuseIsRefusedBeforeAuthentication(t *testing.T) {
	g := startGateway(t, replicationRejectRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	for _, v := range []string{"xyz", "o", "true ", "Database", "2"} {
		r := dialRaw(t, g.addr())
		r.write(startupBytes(3, 0, "user", "alice", "database", "postgres", "replication", v))
		m := r.receive()
		e, ok := m.(*pgproto3.ErrorResponse)
		if !ok {
			t.Fatalf("replication=%q: want an error before authentication, got %T", v, m)
		}
		if e.Code != "22023" || e.Message != fmt.Sprintf(`invalid value for parameter "replication": %q`, v) {
			t.Fatalf("replication=%q: got %s %q", v, e.Code, e.Message)
		}
	}
}

func TestReplicationFalseIsAnOrdinarySession(t *testing.T) {
	g := startGateway(t, replicationRejectRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	c := g.mustConnectString(g.connString("alice", "alice-Pass-1", "postgres") + " replication=off")
	if got := queryOne(t, c, "SELECT 'ordinary'"); got != "ordinary" {
		t.Fatal(got)
	}
}

func TestAWireClientThatGivesUpEarlyLearnsNothingFromTheThrottle(t *testing.T) {
	g := startGatewayWith(t, gwOptions{throttle: `failure_delay = "3s"` + "\n" + `max_delay = "30s"`},
		passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	_, err := g.connect("alice", "wrong-password", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "alice"`)
	// Impatient attempts, even with the right password, are never
	// checked: they get no answer at all before they give up.
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		c, err := pgx.Connect(ctx, g.connString("alice", "alice-Pass-1", "postgres"))
		cancel()
		if err == nil {
			c.Close(context.Background())
			t.Fatalf("attempt %d was checked before the backoff passed", i+1)
		}
		if pe := pgErrorOrNil(err); pe != nil {
			t.Fatalf("attempt %d was answered (%s) before the backoff passed", i+1, pe.Code)
		}
	}
	// A patient client with the right password gets in once it passed.
	start := time.Now()
	g.mustConnect("alice", "alice-Pass-1", "postgres")
	t.Logf("the patient login took %v", time.Since(start))
}

func TestAnHTTPClientThatGivesUpEarlyLearnsNothingFromTheThrottle(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true, throttle: `failure_delay = "3s"` + "\n" + `max_delay = "30s"`},
		httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	try := func(pw string, timeout time.Duration) (int, error) {
		return selectOne(context.Background(), &http.Client{Timeout: timeout}, g, "alice", pw, "")
	}
	if status, err := try("wrong-password", 10*time.Second); err != nil || status != 401 {
		t.Fatalf("first wrong guess: %d %v", status, err)
	}
	answered := 0
	for i := 0; i < 8; i++ {
		pw := "wrong-password"
		if i%2 == 1 {
			pw = "alice-Pass-1"
		}
		if _, err := try(pw, 300*time.Millisecond); err == nil {
			answered++
		}
	}
	if answered != 0 {
		t.Fatalf("%d impatient guesses were answered before the backoff passed", answered)
	}
	if status, err := try("alice-Pass-1", 30*time.Second); err != nil || status != 200 {
		t.Fatalf("the patient right password: %d %v", status, err)
	}
}

func TestNoSessionStatePassesBetweenHTTPRequestsOfOneBackendRole(t *testing.T) {
	// carol and dave are both mapped to backend role app_rw: their
	// requests share a pool of backend connections.
	users := []testUser{
		{name: "carol", password: "carol-Pass-3", extra: "backend_user = \"app_rw\"\n"},
		{name: "dave", password: "dave-Pass-4", extra: "backend_user = \"app_rw\"\n"},
	}
	g := startHTTPGateway(t, "", "[[hba]]\nprotocol = \"http\"\nmethod = \"password\"\n", users)
	sql := func(user, pw, stmt string) map[string]any {
		t.Helper()
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", jsonText(t, map[string]any{"stmt": stmt}), basic(user, pw))
		if status != 200 {
			t.Fatalf("%s: %q answered %d %v", user, stmt, status, out)
		}
		return out
	}
	// carol leaves every kind of session state behind, many times, so
	// that every pooled connection has some.
	for i := 0; i < 12; i++ {
		sql("carol", "carol-Pass-3", "SELECT set_config('search_path', 'carol_schema', false)")
		sql("carol", "carol-Pass-3", "CREATE TEMP TABLE IF NOT EXISTS carol_tmp (x int)")
		sql("carol", "carol-Pass-3", "SELECT set_config('app.tenant', 'carol', false)")
		sql("carol", "carol-Pass-3", "SELECT pg_advisory_lock(4242)")
		// Transaction and bulk requests are reset on another path than
		// a single statement's: they leave state too.
		body := map[string]any{"transaction": []map[string]any{
			{"stmt": "SELECT set_config('app.tx', 'carol', false)"},
			{"stmt": "SELECT pg_advisory_lock(4343)"},
		}}
		if status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", jsonText(t, body), basic("carol", "carol-Pass-3")); status != 200 {
			t.Fatalf("carol's transaction answered %d %v", status, out)
		}
		body = map[string]any{"stmt": "SELECT set_config('app.bulk', $1, false)", "bulk_args": [][]any{{"carol"}, {"carol"}}}
		if status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", jsonText(t, body), basic("carol", "carol-Pass-3")); status != 200 {
			t.Fatalf("carol's bulk request answered %d %v", status, out)
		}
	}
	for i := 0; i < 12; i++ {
		out := sql("dave", "dave-Pass-4", `SELECT current_setting('search_path') AS sp,
			(SELECT count(*) FROM pg_class WHERE relname = 'carol_tmp' AND relpersistence = 't') AS tmp,
			coalesce(current_setting('app.tenant', true), '<null>') AS tenant,
			(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks,
			coalesce(current_setting('app.tx', true), '<null>') AS tx,
			coalesce(current_setting('app.bulk', true), '<null>') AS bulk`)
		row := out["rows"].([]any)[0].([]any)
		if row[0] != `"$user", public` || fmt.Sprint(row[1]) != "0" || fmt.Sprint(row[3]) != "0" {
			t.Fatalf("request %d of dave sees carol's session state: %v", i, row)
		}
		// The placeholder of a custom setting is '' where a fresh session
		// has NULL: DISCARD ALL cannot remove it, so say what it is.
		for j, name := range map[int]string{2: "app.tenant", 4: "app.tx", 5: "app.bulk"} {
			if row[j] != "<null>" && row[j] != "" {
				t.Fatalf("request %d of dave reads carol's %s = %v", i, name, row[j])
			}
		}
	}
	// Once requests are over, no pooled connection holds carol's
	// advisory locks: a connection is reset when its request ends, not
	// when it is next handed out.
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := pgx.Connect(context.Background(), fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", pg.sockDir, pg.port))
		if err != nil {
			t.Fatal(err)
		}
		var held int
		err = conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").Scan(&held)
		conn.Close(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if held == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d advisory locks are still held by idle pooled connections", held)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sharedRoleUsers are two HTTP users mapped to one backend role, app_rw:
// their requests share a pool of backend connections.
var sharedRoleUsers = []testUser{
	{name: "carol", password: "carol-Pass-3", extra: "backend_user = \"app_rw\"\n"},
	{name: "dave", password: "dave-Pass-4", extra: "backend_user = \"app_rw\"\n"},
}

// startSharedRoleGateway starts an HTTP gateway for sharedRoleUsers; run
// posts a /_sql body as one of them and fails the test unless it answers
// 200.
func startSharedRoleGateway(t *testing.T) (g *gateway, run func(user string, body map[string]any) map[string]any) {
	g = startHTTPGateway(t, "", "[[hba]]\nprotocol = \"http\"\nmethod = \"password\"\n", sharedRoleUsers)
	return g, func(user string, body map[string]any) map[string]any {
		t.Helper()
		pw := ""
		for _, u := range sharedRoleUsers {
			if u.name == user {
				pw = u.password
			}
		}
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", jsonText(t, body), basic(user, pw))
		if status != 200 {
			t.Fatalf("%s: %v answered %d %v", user, body, status, out)
		}
		return out
	}
}

func TestAnHTTPUserCannotChooseTheRandomNumbersOfTheNextRequest(t *testing.T) {
	_, run := startSharedRoleGateway(t)
	known := seedDraw(t, "0")
	// A single statement, a transaction and a bulk request each leave
	// their connection by a path of its own.
	for _, body := range []map[string]any{
		{"stmt": "SELECT setseed(0)"},
		{"transaction": []map[string]any{{"stmt": "SELECT 1"}, {"stmt": "SELECT setseed(0)"}}},
		{"stmt": "SELECT setseed($1)", "bulk_args": [][]any{{0}}},
	} {
		for i := 0; i < 5; i++ {
			run("carol", body)
			row := run("dave", map[string]any{"stmt": "SELECT random()::text"})["rows"].([]any)[0].([]any)
			if row[0] == known {
				t.Fatalf("after carol's %v, dave drew %v, the first draw after setseed(0)", body, row[0])
			}
		}
	}
}

func TestHTTPRequestsStillRunWhenTheBackendRoleMayNotReseed(t *testing.T) {
	// Without EXECUTE on setseed a pooled connection cannot be reseeded
	// for another user: a new connection serves the request instead.
	if err := pg.Exec("REVOKE EXECUTE ON FUNCTION setseed(float8) FROM PUBLIC"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Exec("GRANT EXECUTE ON FUNCTION setseed(float8) TO PUBLIC") })
	_, run := startSharedRoleGateway(t)
	for i := 0; i < 6; i++ {
		for _, user := range []string{"carol", "dave"} {
			run(user, map[string]any{"stmt": "SELECT 1"})
			run(user, map[string]any{"transaction": []map[string]any{{"stmt": "SELECT 1"}}})
		}
	}
}

func TestAnHTTPRequestsDblinkConnectionDoesNotReachTheNextRequest(t *testing.T) {
	// dblink_connect_u skips dblink's password checks; granted to the
	// shared role, it opens connections as whoever the request names.
	if err := pg.Exec("CREATE EXTENSION IF NOT EXISTS dblink"); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec("GRANT EXECUTE ON FUNCTION dblink_connect_u(text, text), dblink_connect_u(text) TO app_rw"); err != nil {
		t.Fatal(err)
	}
	g, run := startSharedRoleGateway(t)
	remote := fmt.Sprintf("host=%s port=%d dbname=postgres user=postgres", pg.sockDir, pg.port)
	for _, body := range []map[string]any{
		{"stmt": "SELECT dblink_connect_u('kept', $1)", "args": []any{remote}},
		{"stmt": "SELECT dblink_connect_u($1)", "args": []any{remote}},
		{"transaction": []map[string]any{{"stmt": "SELECT 1"}, {"stmt": "SELECT dblink_connect_u('kept', $1)", "args": []any{remote}}}},
		{"stmt": "SELECT dblink_connect_u($1, $2)", "bulk_args": [][]any{{"kept", remote}}},
	} {
		for i := 0; i < 3; i++ {
			run("carol", body)
			row := run("dave", map[string]any{"stmt": "SELECT coalesce(dblink_get_connections()::text, '<none>')"})["rows"].([]any)[0].([]any)
			if row[0] != "<none>" {
				t.Fatalf("after carol's %v, dave's request finds dblink connections %v", body, row[0])
			}
			// The unnamed connection is not listed: try it.
			unnamed := jsonText(t, map[string]any{"stmt": "SELECT * FROM dblink('SELECT 1') AS r(x int)"})
			if status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", unnamed, basic("dave", "dave-Pass-4")); status == 200 {
				t.Fatalf("after carol's %v, dave's request queries through an unnamed dblink connection: %v", body, out)
			}
		}
	}
}

func TestAnHTTPBackendReleasedWithoutItsResetIsResetBeforeItIsHandedOut(t *testing.T) {
	// Every request path releases through HTTPPools.Release, which
	// resets. A path that forgot (a plain pgxpool call) must still not
	// pass state on: the pool resets such a connection before it hands
	// it out again.
	cfg := config.Default()
	cfg.Backend.Host, cfg.Backend.Port = pg.sockDir, pg.port
	pools := backend.NewHTTPPools(zap.NewNop())
	defer pools.Close()
	pool, err := pools.Get(cfg, backend.Target{Host: pg.sockDir, Port: pg.port, Role: "postgres", Database: "postgres"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var pid1, pid2 int
	if err := pool.QueryRow(ctx, "SELECT pg_backend_pid() FROM (SELECT set_config('app.left', 'behind', false)) s").Scan(&pid1); err != nil {
		t.Fatal(err)
	}
	var left string
	if err := pool.QueryRow(ctx, "SELECT pg_backend_pid(), coalesce(current_setting('app.left', true), '')").Scan(&pid2, &left); err != nil {
		t.Fatal(err)
	}
	if pid1 != pid2 {
		t.Fatalf("the second query ran on another backend (%d, %d): nothing was tested", pid1, pid2)
	}
	if left == "behind" {
		t.Fatal("a connection released without its reset was handed out with its session state")
	}
}

func TestTheResetPipelinedBehindAStatementKeepsItsMeaning(t *testing.T) {
	g := startHTTPGateway(t, "", "[[hba]]\nprotocol = \"http\"\nmethod = \"password\"\n", []testUser{{name: "erin", password: "erin-Pass-5"}})
	if err := pg.Exec("DROP TABLE IF EXISTS pipelined_t; CREATE TABLE pipelined_t (a int, z int); INSERT INTO pipelined_t VALUES (1, 2); ALTER TABLE pipelined_t OWNER TO erin"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Exec("DROP TABLE IF EXISTS pipelined_t") })
	run := func(stmt string) (int, map[string]any) {
		t.Helper()
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", jsonText(t, map[string]any{"stmt": stmt}), basic("erin", "erin-Pass-5"))
		return status, out
	}
	// A statement that refuses a transaction block still runs: the reset
	// behind it has a Sync of its own.
	if status, out := run("VACUUM pipelined_t"); status != 200 {
		t.Fatalf("VACUUM: %d %v", status, out)
	}
	// The same text after the table changed under the cached description:
	// every request answers with the table as it is now.
	for i := 0; i < 12; i++ {
		if status, out := run("SELECT * FROM pipelined_t"); status != 200 {
			t.Fatalf("before ALTER: %d %v", status, out)
		}
	}
	if status, out := run("ALTER TABLE pipelined_t ADD COLUMN b text DEFAULT 'x', ADD COLUMN c bigint DEFAULT 7"); status != 200 {
		t.Fatalf("ALTER: %d %v", status, out)
	}
	for i := 0; i < 12; i++ {
		status, out := run("SELECT * FROM pipelined_t")
		if status != 200 || fmt.Sprint(out["rows"]) != "[[1 2 x 7]]" {
			t.Fatalf("request %d after ALTER: %d %v", i, status, out)
		}
	}
	// A failed statement leaves nothing behind either.
	if status, _ := run("SELECT set_config('search_path', 'gone', false), 1/0"); status != 400 {
		t.Fatalf("1/0 answered %d", status)
	}
	for i := 0; i < 12; i++ {
		if _, out := run("SHOW search_path"); fmt.Sprint(out["rows"]) != `[["$user", public]]` {
			t.Fatalf("search_path after a failed statement: %v", out["rows"])
		}
	}
}

func TestATransactionRequestIsAllOrNothingEvenWithCOMMITInside(t *testing.T) {
	g := startHTTPGateway(t, "", "[[hba]]\nprotocol = \"http\"\nmethod = \"password\"\n", []testUser{{name: "alice", password: "alice-Pass-1"}})
	if err := pg.Exec("DROP TABLE IF EXISTS tx_all_or_nothing; CREATE TABLE tx_all_or_nothing (x int); GRANT ALL ON tx_all_or_nothing TO alice"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Exec("DROP TABLE IF EXISTS tx_all_or_nothing") })
	for _, end := range []string{"COMMIT", "commit and chain", "END", "ABORT", "ROLLBACK", "/* x */ COMMIT", "PREPARE TRANSACTION 'p1'"} {
		body := jsonText(t, map[string]any{"transaction": []map[string]any{
			{"stmt": "INSERT INTO tx_all_or_nothing VALUES (1)"},
			{"stmt": end},
			{"stmt": "INSERT INTO tx_all_or_nothing VALUES (2)"},
			{"stmt": "SELECT 1/0"},
		}})
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", body, basic("alice", "alice-Pass-1"))
		if status != 400 || errCode(out) != "25001" {
			t.Fatalf("%q inside a transaction: %d %v", end, status, out)
		}
		if e := out["error"].(map[string]any); fmt.Sprint(e["statement"]) != "1" {
			t.Fatalf("%q: the refusal names statement %v, want 1", end, e["statement"])
		}
	}
	// bulk_args cannot end its transaction either.
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt": "COMMIT", "bulk_args": [[], []]}`, basic("alice", "alice-Pass-1"))
	if status != 400 || errCode(out) != "25001" {
		t.Fatalf("COMMIT with bulk_args: %d %v", status, out)
	}
	// Nor can a COMMIT behind another statement of the text: an empty
	// argument list took pgx's simple protocol, which ran every statement,
	// and the first row stayed committed under the error answer.
	for _, body := range []string{
		`{"stmt": "INSERT INTO tx_all_or_nothing VALUES (1); COMMIT; BEGIN; INSERT INTO tx_all_or_nothing VALUES (2)", "bulk_args": [[], [1]]}`,
		`{"stmt": "INSERT INTO tx_all_or_nothing VALUES (1); COMMIT", "bulk_args": [[]]}`,
	} {
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", body, basic("alice", "alice-Pass-1"))
		if status != 400 || errCode(out) != "42601" {
			t.Fatalf("two statements in bulk_args' text: %d %v", status, out)
		}
	}
	// An empty list for a statement with parameters is the client's
	// error, in the words a single statement gets.
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt": "INSERT INTO tx_all_or_nothing VALUES ($1)", "bulk_args": [[]]}`, basic("alice", "alice-Pass-1"))
	if status != 400 || errCode(out) != "22023" || !strings.Contains(fmt.Sprint(out), "expected 1 arguments, got 0") {
		t.Fatalf("bulk_args [[]] for a statement with a parameter: %d %v", status, out)
	}
	_, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt": "SELECT count(*) FROM tx_all_or_nothing"}`, basic("alice", "alice-Pass-1"))
	if n := fmt.Sprint(out["rows"].([]any)[0].([]any)[0]); n != "0" {
		t.Fatalf("%s rows committed by refused transactions", n)
	}
	// Savepoints stay inside and work.
	body := jsonText(t, map[string]any{"transaction": []map[string]any{
		{"stmt": "INSERT INTO tx_all_or_nothing VALUES (1)"}, {"stmt": "SAVEPOINT a"},
		{"stmt": "INSERT INTO tx_all_or_nothing VALUES (2)"}, {"stmt": "ROLLBACK TO SAVEPOINT a"},
	}})
	if status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", body, basic("alice", "alice-Pass-1")); status != 200 {
		t.Fatalf("savepoints: %d %v", status, out)
	}
	_, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt": "SELECT count(*) FROM tx_all_or_nothing"}`, basic("alice", "alice-Pass-1"))
	if n := fmt.Sprint(out["rows"].([]any)[0].([]any)[0]); n != "1" {
		t.Fatalf("after a transaction with a rolled-back savepoint: %s rows, want 1", n)
	}
}

// A name with a zero byte cannot reach PostgreSQL (its startup packet ends
// a name there), so HBA must never judge one: "eve\x00" is not eve to the
// rules but would be eve to a backend that cut it. HTTP can carry them in
// Basic, inline credentials and ?db=; each is refused as malformed.
func TestANameWithAZeroByteIsRefusedBeforeHBAJudgesIt(t *testing.T) {
	g := startHTTPGateway(t, "", httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	nul := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("eve\x00:pw"))}
	for _, c := range []struct {
		what, query, body string
		hdr               map[string]string
	}{
		{"Basic user", "?db=postgres", `{"stmt":"SELECT 1"}`, nul},
		{"inline user", "?db=postgres", `{"credentials":{"user":"alice\u0000","password":"alice-Pass-1"},"stmt":"SELECT 1"}`, nil},
		{"database", "?db=postgres%00x", `{"stmt":"SELECT 1"}`, basic("dave", "x")},
	} {
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql"+c.query, c.body, c.hdr)
		if status != 400 || errCode(out) != "08P01" {
			t.Fatalf("%s with a zero byte: %d %v", c.what, status, out)
		}
	}
	g.waitLog("the user or database name holds a zero byte", 3)
}

// Every failed name was a key of the throttle's table and a field of an
// audit line, whatever its length: 400 requests with half-megabyte inline
// user names took 380 MB of memory and wrote 400 MB of log in 3 s. Names
// over 256 bytes are refused before the throttle or a hash sees them, on
// both frontends, and the audit line keeps only their start and length.
func TestAnOverlongNameIsRefusedBeforeTheThrottleOrTheLogKeepsIt(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true}, "[[hba]]\nmethod = \"password\"\n", []testUser{{name: "alice", password: "alice-Pass-1"}})
	long := strings.Repeat("n", 257)
	_, err := g.connect(long, "x", "postgres")
	wantPgError(t, err, "08P01", "the user or database name is over 256 bytes (user 257, database 8)")
	_, err = g.connect("alice", "alice-Pass-1", long)
	wantPgError(t, err, "08P01", "the user or database name is over 256 bytes (user 5, database 257)")

	huge := strings.Repeat("h", 200_000)
	for _, c := range []struct {
		what, query, body string
		hdr               map[string]string
	}{
		{"Basic user", "?db=postgres", `{"stmt":"SELECT 1"}`, basic(long, "x")},
		{"database", "?db=" + long, `{"stmt":"SELECT 1"}`, basic("alice", "alice-Pass-1")},
		{"inline user", "?db=postgres", `{"credentials":{"user":"` + huge + `","password":"x"},"stmt":"SELECT 1"}`, nil},
	} {
		status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql"+c.query, c.body, c.hdr)
		if status != 400 || errCode(out) != "08P01" || !strings.Contains(fmt.Sprint(out), "is over 256 bytes") {
			t.Fatalf("%s over 256 bytes: %d %v", c.what, status, out)
		}
	}
	g.waitLog("is over 256 bytes", 5)
	if logged := g.log.String(); strings.Contains(logged, huge[:1000]) || !strings.Contains(logged, "... (200000 bytes)") {
		t.Fatalf("the audit line of a 200,000-byte name does not keep only its start and length:\n%.3000s", logged)
	}
	// A name at the bound is an ordinary name.
	_, err = g.connect(strings.Repeat("n", 256), "x", "postgres")
	wantPgError(t, err, "28P01", fmt.Sprintf("password authentication failed for user %q", strings.Repeat("n", 256)))
}

// A host is given a whole IPv6 /64 to pick source addresses from: a
// throttle per address let it try each guess from a fresh one. An IPv6
// client counts as its /64 (throttle.ipv6_prefix), IPv4 clients as their
// address. The clients here arrive through a trusted proxy's
// X-Forwarded-For, the only way to have many addresses on loopback.
func TestTheThrottleCountsAnIPv6ClientsWholeNetwork(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true, server: `trusted_proxies = ["127.0.0.1/32"]`, throttle: `failure_delay = "3s"` + "\n" + `max_delay = "30s"`},
		httpRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	try := func(from, pw string, timeout time.Duration) (int, error) {
		return selectOne(context.Background(), &http.Client{Timeout: timeout}, g, "alice", pw, from)
	}
	if status, err := try("2001:db8:7:7::1", "wrong-password", 10*time.Second); err != nil || status != 401 {
		t.Fatalf("first wrong guess: %d %v", status, err)
	}
	for _, from := range []string{"2001:db8:7:7::2", "2001:db8:7:7:ffff:1:2:3"} {
		if status, err := try(from, "alice-Pass-1", 500*time.Millisecond); err == nil {
			t.Fatalf("a guess from %s, in the failing /64, was answered (%d) before the backoff passed", from, status)
		}
	}
	for _, from := range []string{"2001:db8:7:8::1", "192.0.2.7"} {
		if status, err := try(from, "alice-Pass-1", 2*time.Second); err != nil || status != 200 {
			t.Fatalf("alice from %s, another network, was held up: %d %v", from, status, err)
		}
	}
}

// scramSalt returns what pgwarden's SCRAM challenge shows for user: its
// salt and iteration count ("s=...,i=...").
func scramSalt(t *testing.T, g *gateway, user string) string {
	t.Helper()
	r := dialRaw(t, g.addr())
	r.write(startupBytes(3, 0, "user", user, "database", "postgres"))
	if m, ok := r.receive().(*pgproto3.AuthenticationSASL); !ok {
		t.Fatalf("want AuthenticationSASL for %s, got %#v", user, m)
	}
	r.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=pgwardenTestNonce")})
	cont, ok := r.receive().(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		t.Fatalf("want AuthenticationSASLContinue for %s", user)
	}
	_, challenge, _ := strings.Cut(string(cont.Data), ",s=")
	return challenge
}

// An unknown name is challenged with a mock salt, as in PostgreSQL. It was
// keyed per reload: after any reload (a users-file edit, or a NOTIFY on
// the store's channel, open to any role of its database) an unknown
// name's salt changed and a user's did not, and two instances behind one
// address showed an unknown name two salts. Comparing two answers told
// which names exist. The key is now the process's, and instances share
// one through users.mock_auth_secret or the PostgreSQL store.
func TestAnUnknownNamesSaltStaysPutAcrossReloadsAndInstances(t *testing.T) {
	rules := "[[hba]]\nmethod = \"scram-sha-256\"\n\n[users]\nmock_auth_secret = \"one-secret-for-every-instance\"\n"
	users := []testUser{{name: "alice", password: "alice-Pass-1"}}
	a := startGateway(t, rules, users)
	before := map[string]string{"alice": scramSalt(t, a, "alice"), "nobody": scramSalt(t, a, "nobody")}
	if before["alice"] == before["nobody"] || scramSalt(t, a, "nobody") != before["nobody"] {
		t.Fatalf("salts: alice %q, nobody %q", before["alice"], before["nobody"])
	}
	a.reloadAfter(func() { a.writeUsers(append(users, testUser{name: "bob", password: "bob-Pass-2"})) })
	b := startGateway(t, rules, users)
	for name, salt := range before {
		if got := scramSalt(t, a, name); got != salt {
			t.Fatalf("after a reload %s's challenge changed from %q to %q", name, salt, got)
		}
		if got := scramSalt(t, b, name); got != salt {
			t.Fatalf("another instance with the same mock_auth_secret challenges %s with %q, the first with %q", name, got, salt)
		}
	}
}

// Every guess at a new name costs a hash, which the throttle cannot hold
// back (it counts per name), and waiting hashes were served in the order
// they came: one source that kept 64 guesses waiting made a user's first
// login from elsewhere wait behind all of them (68 ms became 3.9 s with
// bcrypt). Waiting hashes are now served by source in turn. Medians of
// logins of users not yet cached, with and without the flood.
func TestAFloodOfGuessesFromOneSourceDoesNotHoldUpAnothersLogin(t *testing.T) {
	users := make([]testUser, 12)
	for i := range users {
		users[i] = testUser{name: fmt.Sprintf("u%d", i), password: "user-Pass-1", algo: "bcrypt", extra: "backend_user = \"postgres\"\n"}
	}
	g := startGatewayWith(t, gwOptions{http: true, server: `trusted_proxies = ["127.0.0.1/32"]`}, httpRules, users)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: time.Minute}
	flood, stopFlood := context.WithCancel(context.Background())
	defer stopFlood()
	medianLogin := func(first int) time.Duration {
		var took []time.Duration
		for _, u := range users[first : first+5] {
			start := time.Now()
			status, err := selectOne(context.Background(), client, g, u.name, u.password, "198.51.100.7")
			if status != 200 {
				t.Fatalf("%s's login: %d %v", u.name, status, err)
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		return took[len(took)/2]
	}
	quiet := medianLogin(0)
	var wg sync.WaitGroup
	for w := range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; flood.Err() == nil; i++ {
				// The guesses leave the queue when the flood ends.
				selectOne(flood, client, g, fmt.Sprintf("nobody%d-%d", w, i), "a-guess", "203.0.113.1")
			}
		}()
	}
	time.Sleep(time.Second) // the guesses fill the queue
	flooded := medianLogin(6)
	stopFlood()
	wg.Wait()
	t.Logf("median login: %v alone, %v beside 48 waiting guesses from one source", quiet, flooded)
	if flooded > 10*quiet {
		t.Fatalf("a login from another source took %v beside one source's flood of guesses, %v without it", flooded, quiet)
	}
}

// selectOne posts SELECT 1 with Basic credentials through client, from the
// X-Forwarded-For address from ("" sends none): the status, or the error
// of a client that gave up (its timeout, or ctx).
func selectOne(ctx context.Context, client *http.Client, g *gateway, user, pw, from string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, "POST", g.httpURL()+"/_sql?db=postgres", strings.NewReader(`{"stmt": "SELECT 1"}`))
	req.Header.Set("Content-Type", "application/json")
	if from != "" {
		req.Header.Set("X-Forwarded-For", from)
	}
	req.SetBasicAuth(user, pw)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// A client names the database (?db=), and every (role, database) had a
// pool of its own kept until the idle timeout, with a goroutine each, even
// when the database did not exist: requests naming ever new databases grew
// the gateway without bound. A pool whose login fails is no longer kept.
func TestRequestsNamingDatabasesThatDoNotExistKeepNothing(t *testing.T) {
	g := startHTTPGateway(t, "", httpRules, nil)
	goroutines := func() int {
		resp, err := http.Get(g.httpURL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "go_goroutines "); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
		t.Fatal("no go_goroutines in /metrics")
		return 0
	}
	before := goroutines()
	for i := 0; i < 200; i++ {
		status, _, out := httpDo(t, "POST", fmt.Sprintf("%s/_sql?db=nodb_%d", g.httpURL(), i), `{"stmt":"SELECT 1"}`, basic("dave", "x"))
		if status != 400 || errCode(out) != "3D000" {
			t.Fatalf("database nodb_%d: %d %v", i, status, out)
		}
	}
	if after := goroutines(); after > before+50 {
		t.Fatalf("200 requests for missing databases left %d goroutines (%d before)", after, before)
	}
}

func TestAUsersFileHashOverTheCostBoundStopsTheServerFromStarting(t *testing.T) {
	dir := t.TempDir()
	costly := authcore.NewSCRAMVerifier("slow-Pass-1", 200_000).String()
	noteSecret(costly)
	writeFile(t, filepath.Join(dir, "users.toml"), "[[user]]\nname = \"slow\"\npassword = \""+costly+"\"\n")
	writeFile(t, filepath.Join(dir, "config.toml"), "[[hba]]\nmethod = \"password\"\n")
	out, err := exec.Command(cliBin, "check", "-c", filepath.Join(dir, "config.toml")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "users.toml:3:") || !strings.Contains(string(out), "max_scram_iterations") {
		t.Fatalf("check: %v\n%s", err, out)
	}
}

func TestAnAuthQueryVerifierOverTheCostBoundFailsLikeAWrongPassword(t *testing.T) {
	noteSecret("costly-Pass-1")
	// A backend role set its own verifier to far more iterations than the
	// bound: its login must fail at once, without the work.
	costly := authcore.NewSCRAMVerifier("costly-Pass-1", 200_000).String()
	if err := pg.Exec(fmt.Sprintf("DROP ROLE IF EXISTS aq_costly; CREATE ROLE aq_costly LOGIN PASSWORD '%s'", costly)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Exec("DROP ROLE IF EXISTS aq_costly") })
	g := startGateway(t, fmt.Sprintf(`
[auth_query]
mode = "lookup"
query = "SELECT passwd FROM pg_shadow WHERE usename = $1"
database = "postgres"
user = "postgres"
password = %q

[[hba]]
method = "password"
`, backendPassword), nil)
	_, err := g.connect("aq_costly", "costly-Pass-1", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "aq_costly"`)
	g.waitLog("max_scram_iterations", 1)
}

func TestHTTPRequestsWithAForeignHostAreMisdirected(t *testing.T) {
	g := startHTTPGateway(t, `default_user = "dave"`+"\nallowed_hosts = [\"sql.example.com\"]", httpRules, nil)
	for host, want := range map[string]int{"rebind.evil.example": 421, "127.0.0.1": 200, "localhost": 200, "sql.example.com": 200} {
		req, _ := http.NewRequest("POST", g.httpURL()+"/_sql?db=postgres", strings.NewReader(`{"stmt": "SELECT 1"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("Host %s: %d, want %d", host, resp.StatusCode, want)
		}
	}
}

func TestTheConsoleBehindATrustedProxyIsHTTPSOnlyForRemoteClients(t *testing.T) {
	g := startHTTPGateway(t, "", "[[hba]]\nmethod = \"password\"\n", nil)
	g.opts.server = `trusted_proxies = ["127.0.0.1/32"]`
	g.writeConfig("[[hba]]\nmethod = \"password\"\n")
	g.signal(syscall.SIGHUP)
	g.waitLog("reloaded", 1)
	for _, c := range []struct {
		proto, xff string
		want       int
	}{{"http", "198.51.100.7", 403}, {"", "198.51.100.7", 403}, {"https", "198.51.100.7", 200}, {"", "", 200}} {
		req, _ := http.NewRequest("GET", g.httpURL()+"/", nil)
		if c.proto != "" {
			req.Header.Set("X-Forwarded-Proto", c.proto)
		}
		if c.xff != "" {
			req.Header.Set("X-Forwarded-For", c.xff)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Fatalf("proto %q for %q: %d, want %d", c.proto, c.xff, resp.StatusCode, c.want)
		}
		if c.proto == "https" {
			for _, ck := range resp.Cookies() {
				if !ck.Secure {
					t.Fatalf("cookie %s is not Secure behind an HTTPS proxy", ck.Name)
				}
			}
		}
	}
}

func TestUserAddAsRootKeepsTheUsersFilesOwnerAndMode(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to own a file as another user; CI runs as root")
	}
	dir := t.TempDir()
	users := filepath.Join(dir, "users.toml")
	writeFile(t, users, usersTOML(t, []testUser{{name: "alice", password: "alice-Pass-1"}}))
	writeFile(t, filepath.Join(dir, "config.toml"), "[[hba]]\nmethod = \"password\"\n")
	if err := os.Chown(users, 4242, 4343); err != nil {
		t.Fatal(err)
	}
	os.Chmod(users, 0o640)
	cmd := exec.Command(cliBin, "user", "add", "-c", filepath.Join(dir, "config.toml"), "bob", "--password-stdin")
	cmd.Stdin = strings.NewReader("bob-Pass-2-long\n")
	noteSecret("bob-Pass-2-long")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	for _, p := range []string{users, users + ".lock"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 4242 || st.Gid != 4343 {
			t.Fatalf("%s is owned by %d:%d after user add, want 4242:4343", filepath.Base(p), st.Uid, st.Gid)
		}
	}
	if fi, _ := os.Stat(users); fi.Mode().Perm() != 0o640 {
		t.Fatalf("users file mode %o, want 640", fi.Mode().Perm())
	}
}

func TestAnAdminChangeIsAllOrNothing(t *testing.T) {
	users := []testUser{{name: "ops1", password: "ops1-Pass-6", extra: "roles = [\"admin\"]\n"}, {name: "alice", password: "alice-Pass-1"}}
	hbaFile := filepath.Join(t.TempDir(), "extra_hba.conf")
	writeFile(t, hbaFile, "host all all 127.0.0.1/32 scram-sha-256\n")
	g := startGatewayWith(t, gwOptions{top: fmt.Sprintf("hba_file = %q\n", hbaFile)}, passwordRules, users)
	admin := g.connString("ops1", "ops1-Pass-6", "pgwarden")
	noteSecret("alice-New-Pass-7")
	noteSecret("alice-Other-Pass-8")

	// The config file on disk no longer loads; the one in force is fine:
	// the change is built from the configuration in force, written, and
	// in force when the command answers.
	writeFile(t, g.configPath(), "this is not TOML [")
	if out, err := psql(t, admin, "ALTER USER alice PASSWORD 'alice-New-Pass-7'"); err != nil {
		t.Fatalf("ALTER USER: %v\n%s", err, out)
	}
	g.mustConnect("alice", "alice-New-Pass-7", "postgres")
	_, err := g.connect("alice", "alice-Pass-1", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "alice"`)

	// A change whose new state cannot be built (a file the configuration
	// in force names is gone) answers ERROR and changes nothing: not the
	// users file, not the password in force.
	before, _ := os.ReadFile(filepath.Join(g.dir, "users.toml"))
	os.Remove(hbaFile)
	if out, err := psql(t, admin, "ALTER USER alice PASSWORD 'alice-Other-Pass-8'"); err == nil {
		t.Fatalf("ALTER USER succeeded without its hba_file: %s", out)
	}
	if after, _ := os.ReadFile(filepath.Join(g.dir, "users.toml")); string(after) != string(before) {
		t.Fatal("a failed ALTER USER rewrote the users file")
	}
	g.mustConnect("alice", "alice-New-Pass-7", "postgres")
	_, err = g.connect("alice", "alice-Other-Pass-8", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "alice"`)
}

func TestTheBackendConnectionIgnoresLibpqEnvironmentVariables(t *testing.T) {
	g := startGatewayWith(t, gwOptions{env: []string{"PGSSLKEY=/nonexistent/key", "PGSSLCERT=/nonexistent/cert",
		"PGSERVICE=no_such_service", "PGPASSFILE=/nonexistent/pgpass", "PGOPTIONS=-c work_mem=1MB", "PGSSLMODE=verify-full",
		"PGHOST=192.0.2.1", "PGTARGETSESSIONATTRS=standby"}}, trustRules, nil)
	c := g.mustConnect("alice", "", "postgres")
	if got := queryOne(t, c, "SHOW work_mem"); got != "4MB" {
		t.Fatalf("PGOPTIONS reached the backend: work_mem = %s", got)
	}
	g.waitLog("libpq environment variables ignored", 1)
}

func TestBrokenBackendTLSSettingsAreReportedAtLoad(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users.toml"), "")
	writeFile(t, filepath.Join(dir, "bad.crt"), "not a certificate")
	writeFile(t, filepath.Join(dir, "config.toml"), "[backend]\nsslmode = \"verify-ca\"\nsslrootcert = \"bad.crt\"\n\n[[hba]]\nmethod = \"password\"\n")
	out, err := exec.Command(cliBin, "check", "-c", filepath.Join(dir, "config.toml")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "backend") {
		t.Fatalf("check accepted a broken sslrootcert: %s", out)
	}
}

func TestUserAddSetsTheBackendRole(t *testing.T) {
	g := startGateway(t, passwordRules, nil)
	noteSecret("ursula-Pass-1")
	if _, errOut, code := runCLI(t, "ursula-Pass-1\n", "user", "add", "-c", g.configPath(), "ursula", "--password-stdin", "--backend-user", "app_rw"); code != 0 {
		t.Fatal(errOut)
	}
	g.signal(syscall.SIGHUP)
	g.waitLog(`"msg":"reloaded"`, 1)
	c := g.mustConnect("ursula", "ursula-Pass-1", "postgres")
	if got := queryOne(t, c, "SELECT current_user"); got != "app_rw" {
		t.Fatalf("current_user %s, want the --backend-user role", got)
	}
}

func TestMetricsListenServesMetricsAndReadinessOnAnAddressOfTheirOwn(t *testing.T) {
	mport := freePort()
	g := startGatewayWith(t, gwOptions{http: true, server: fmt.Sprintf("metrics_listen = \"127.0.0.1:%d\"", mport)}, passwordRules,
		[]testUser{{name: "alice", password: "alice-Pass-1"}})
	g.waitLog(`"protocol":"metrics"`, 1)
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	metrics := fmt.Sprintf("http://127.0.0.1:%d", mport)
	if st, body := get(metrics + "/metrics"); st != 200 || !strings.Contains(body, "pgwarden_") {
		t.Fatalf("/metrics on metrics_listen: %d", st)
	}
	if st, _ := get(g.httpURL() + "/metrics"); st != 404 {
		t.Fatalf("/metrics is still public on the SQL listener: %d", st)
	}
	if st, _ := get(metrics + "/readyz"); st != 200 {
		t.Fatalf("/readyz: %d", st)
	}
	// While a session drains after SIGTERM, the metrics listener stays and
	// /readyz says 503 at once.
	live := g.mustConnect("alice", "alice-Pass-1", "postgres")
	g.signal(syscall.SIGTERM)
	g.waitLog("draining", 1)
	if st, _ := get(metrics + "/readyz"); st != 503 {
		t.Fatalf("/readyz while draining: %d, want 503", st)
	}
	live.Close(context.Background())
}

// PostgreSQL cuts a role or database name longer than 63 bytes to its
// first 63 and logs in to that. HBA judged the whole name, so a client
// asking for a rejected 63-byte database (or role) with "x" added got into
// it, on the wire and over HTTP. Such names are now refused (42622) before
// any backend login; a long users-file name with a short backend_user
// still works.
func TestANameThatPostgreSQLWouldCutCannotSlipPastHBA(t *testing.T) {
	db, role := strings.Repeat("d", 63), strings.Repeat("r", 63)
	for _, stmt := range []string{"DROP DATABASE IF EXISTS " + db, "CREATE DATABASE " + db, "DROP ROLE IF EXISTS " + role, "CREATE ROLE " + role + " LOGIN"} {
		if err := pg.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		pg.Exec("DROP DATABASE IF EXISTS " + db)
		pg.Exec("DROP ROLE IF EXISTS " + role)
	})
	long := strings.Repeat("l", 70)
	g := startGatewayWith(t, gwOptions{http: true}, fmt.Sprintf(`
[[hba]]
database = [%q]
method = "reject"

[[hba]]
user = [%q]
method = "reject"

[[hba]]
user = [%q]
method = "password"

[[hba]]
method = "trust"
`, db, role, long), []testUser{{name: long, password: "long-Pass-1", extra: `backend_user = "postgres"` + "\n"}})

	_, err := g.connect("postgres", "", db)
	wantPgError(t, err, "28000", fmt.Sprintf(`HBA rejects connection for host "127.0.0.1", user "postgres", database "%s", SSL off`, db))
	_, err = g.connect("postgres", "", db+"x")
	wantPgError(t, err, "42622", "the backend database name is 64 bytes, over PostgreSQL's limit of 63: refused rather than cut to a name the HBA rules did not judge")
	_, err = g.connect(role+"x", "", "postgres")
	wantPgError(t, err, "42622", "the backend role name is 64 bytes, over PostgreSQL's limit of 63: refused rather than cut to a name the HBA rules did not judge")

	sql := `{"stmt":"SELECT current_user, current_database()"}`
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db="+db+"x", sql, basic("postgres", ""))
	if got := jsonText(t, out); status != 400 || !strings.Contains(got, `"42622"`) {
		t.Fatalf("database over HTTP: %d %s", status, got)
	}
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", sql, basic(role+"x", ""))
	if got := jsonText(t, out); status != 400 || !strings.Contains(got, `"42622"`) {
		t.Fatalf("role over HTTP: %d %s", status, got)
	}
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", sql, basic(long, "long-Pass-1"))
	if got := jsonText(t, out["rows"]); status != 200 || got != `[["postgres","postgres"]]` {
		t.Fatalf("a long users-file name with a short backend role: %d %s", status, jsonText(t, out))
	}
	c := g.mustConnect(long, "long-Pass-1", "postgres")
	queryOne(t, c, "SELECT 1")
}

// A [[databases]] entry gives a backend database a client-facing name,
// and the HBA rules judge the name the client asks for. Unlisted names go
// to the backend unchanged, so until December 2026 a client refused on
// "app" asked for "app_prod", the entry's backend database, by name and got
// in: on the wire and over HTTP. Such a name is now refused after
// authentication with 3D000, as a database that does not exist under that
// name; a name that reaches another server's database of that name, or that
// is listed itself, is not.
func TestARoutedDatabaseIsReachedOnlyByItsListedName(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true}, `
[[databases]]
name = "app"
backend_dbname = "app_prod"

[[databases]]
name = "elsewhere"
backend_dbname = "postgres"
port = 1

[[hba]]
user = ["bob"]
database = ["app"]
method = "reject"
`+passwordRules, []testUser{
		{name: "bob", password: "bob-Pass-2", extra: `backend_user = "app_rw"` + "\n"},
		{name: "alice", password: "alice-Pass-1"},
	})
	_, err := g.connect("bob", "bob-Pass-2", "app")
	wantPgError(t, err, "28000", `HBA rejects connection for host "127.0.0.1", user "bob", database "app", SSL off`)
	_, err = g.connect("bob", "bob-Pass-2", "app_prod")
	wantPgError(t, err, "3D000", `database "app_prod" does not exist`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Detail, "[[databases]]") {
		t.Fatalf("the refusal should say why in its detail: %v", err)
	}
	// Authentication comes first: a wrong password is still 28P01.
	_, err = g.connect("bob", "wrong-password", "app_prod")
	wantPgError(t, err, "28P01", `password authentication failed for user "bob"`)
	g.waitLog(`database \"app_prod\" is the backend database of [[databases]] \"app\"`, 1)

	sql := `{"stmt":"SELECT current_user || '@' || current_database()"}`
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=app_prod", sql, basic("bob", "bob-Pass-2"))
	if got := jsonText(t, out); status != 400 || !strings.Contains(got, `"3D000"`) {
		t.Fatalf("the backend name over HTTP: %d %s", status, got)
	}
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=app", sql, basic("alice", "alice-Pass-1"))
	if got := jsonText(t, out["rows"]); status != 200 || got != `[["alice@app_prod"]]` {
		t.Fatalf("the listed name over HTTP: %d %s", status, jsonText(t, out))
	}

	c := g.mustConnect("alice", "alice-Pass-1", "app")
	if got := queryOne(t, c, "SELECT current_database()"); got != "app_prod" {
		t.Fatalf("the listed name reached %q", got)
	}
	// "elsewhere" routes to another server's postgres: the default
	// server's postgres is another database, reached by its own name.
	c = g.mustConnect("alice", "alice-Pass-1", "postgres")
	queryOne(t, c, "SELECT 1")

	out2, _, code := runCLI(t, "", "explain", "-c", g.configPath(), "--protocol", "pg", "--user", "bob", "--database", "app_prod", "--address", "127.0.0.1")
	if code != 0 || !strings.Contains(out2, `refused after authentication (3D000): database "app_prod" is the backend database of [[databases]] "app"`) {
		t.Fatalf("explain should say the name is refused: %d %s", code, out2)
	}
}

// An entry whose host is this machine by another name (its hostname, which
// resolves to a loopback or an interface address of its own; or, where it
// does not resolve, counts as the same server) guards its backend database
// like one written the default [backend] host's way: before, only names
// written alike were compared, so a second name of the default server let
// an unlisted client name reach the entry's database past its rules.
// Another machine's address does not.
func TestAnEntryNamingTheDefaultServerAnotherWayGuardsItsDatabase(t *testing.T) {
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	g := startGatewayWith(t, gwOptions{http: true}, fmt.Sprintf(`
[[databases]]
name = "byname"
backend_dbname = "byname_prod"
host = %q

[[databases]]
name = "far"
backend_dbname = "far_prod"
host = "203.0.113.7"
`, hostname)+passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	_, err = g.connect("alice", "alice-Pass-1", "byname_prod")
	wantPgError(t, err, "3D000", `database "byname_prod" does not exist`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Detail, "[[databases]]") {
		t.Fatalf("refused by pgwarden, saying why: %v", err)
	}
	g.waitLog(`database \"byname_prod\" is the backend database of [[databases]] \"byname\"`, 1)
	sql := `{"stmt":"SELECT 1"}`
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=byname_prod", sql, basic("alice", "alice-Pass-1"))
	if got := jsonText(t, out); status != 400 || !strings.Contains(got, "[[databases]]") {
		t.Fatalf("the backend name over HTTP: %d %s", status, got)
	}
	// far_prod on the default server is another database: the name goes
	// through, and PostgreSQL itself says it does not exist there.
	_, err = g.connect("alice", "alice-Pass-1", "far_prod")
	wantPgError(t, err, "3D000", `database "far_prod" does not exist`)
	if errors.As(err, &pgErr) && strings.Contains(pgErr.Detail, "[[databases]]") {
		t.Fatalf("far_prod was refused as a routed name: %q", pgErr.Detail)
	}
	out2, _, code := runCLI(t, "", "explain", "-c", g.configPath(), "--protocol", "pg", "--user", "alice", "--database", "byname_prod", "--address", "127.0.0.1")
	if code != 0 || !strings.Contains(out2, `is the backend database of [[databases]] "byname"`) {
		t.Fatalf("explain should say the name is refused: %d %s", code, out2)
	}
	out2, _, code = runCLI(t, "", "check", "-c", g.configPath())
	if code != 0 || !strings.Contains(out2, `note: [[databases]] "byname": host`) || strings.Contains(out2, `note: [[databases]] "far"`) {
		t.Fatalf("check should note the entry taken for the default server, and only it: %d %s", code, out2)
	}
}

// max_backend_connections bounds the backends of both frontends together:
// the HTTP pools' connections count too, an HTTP request past the bound
// waits within connect_timeout for a backend to be released and gets 503
// 53300 when none is, and a wire login takes the place of an idle HTTP
// connection. Before, HTTP counted nothing: a burst
// of requests to a few databases left 10 idle connections per (role,
// database) behind for idle_timeout, past the bound an operator set below
// PostgreSQL's max_connections.
func TestMaxBackendConnectionsBoundsHTTPConnectionsToo(t *testing.T) {
	own := ownCluster(t)
	if err := own.Exec("CREATE DATABASE spare"); err != nil {
		t.Fatal(err)
	}
	const limit = 4
	g := startGatewayWith(t, gwOptions{http: true, backendPort: own.port, backend: fmt.Sprintf("max_backend_connections = %d\nconnect_timeout = \"2s\"", limit)},
		httpRules+passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	ctx := context.Background()
	watcher, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", own.sockDir, own.port))
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close(ctx)
	backends := func() int {
		var n int
		if err := watcher.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'alice'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var wg sync.WaitGroup
	statuses := make(chan int, 36)
	for i := 0; i < 36; i++ {
		db := []string{"postgres", "app_prod", "spare"}[i%3]
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db="+db, `{"stmt":"SELECT pg_sleep(0.5)"}`, basic("alice", "alice-Pass-1"))
			if (status == 503 && errCode(out) != "53300") || (status != 200 && status != 503) {
				t.Errorf("%d with %v", status, out)
			}
			statuses <- status
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	most := 0
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(50 * time.Millisecond):
			most = max(most, backends())
		}
	}
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	// Which requests wait long enough to be refused depends on timing:
	// each is answered, or refused with 53300.
	if counts[200] < limit || counts[200]+counts[503] != 36 {
		t.Fatalf("answers %v: want 200s and the rest 503", counts)
	}
	if after := backends(); most > limit || after > limit {
		t.Fatalf("%d backends during the burst and %d after it, with max_backend_connections = %d", most, after, limit)
	}
	// The burst left idle HTTP connections: wire logins take their place.
	for i := 0; i < 3; i++ {
		conn := g.mustConnect("alice", "alice-Pass-1", "postgres")
		if got := queryOne(t, conn, "SELECT 'wire'"); got != "wire" {
			t.Fatal(got)
		}
		conn.Close(ctx)
	}
	if n := backends(); n > limit {
		t.Fatalf("%d backends after the wire logins", n)
	}
	// Every backend busy in a wire session: a request waits for one,
	// refused 503 53300 when none is released within connect_timeout...
	var held []*pgx.Conn
	for i := 0; i < limit; i++ {
		held = append(held, g.mustConnect("alice", "alice-Pass-1", "postgres"))
	}
	start := time.Now()
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=spare", `{"stmt":"SELECT 1"}`, basic("alice", "alice-Pass-1"))
	if status != 503 || errCode(out) != "53300" {
		t.Fatalf("every backend in use: %d %v", status, out)
	}
	// The wait takes half of connect_timeout: the other half is the
	// backend login's.
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Fatalf("refused after %v, without waiting for a release", waited)
	}
	// ...and answered when a session ends during its wait.
	go func() {
		time.Sleep(300 * time.Millisecond)
		held[0].Close(ctx)
	}()
	status, _, out = httpDo(t, "POST", g.httpURL()+"/_sql?db=spare", `{"stmt":"SELECT 'after'"}`, basic("alice", "alice-Pass-1"))
	if status != 200 {
		t.Fatalf("a wire session ended during the request's wait, yet: %d %v", status, out)
	}
	for _, c := range held[1:] {
		c.Close(ctx)
	}
}

func TestAnHTTPRequestsTemporaryReplicationSlotDoesNotOutliveIt(t *testing.T) {
	if err := pg.Exec("ALTER ROLE app_rw REPLICATION"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Exec("ALTER ROLE app_rw NOREPLICATION") })
	_, run := startSharedRoleGateway(t)
	for _, body := range []map[string]any{
		{"stmt": "SELECT pg_create_physical_replication_slot('pgw_http_slot', false, true)::text"},
		{"transaction": []map[string]any{{"stmt": "SELECT 1"}, {"stmt": "SELECT pg_create_physical_replication_slot('pgw_http_slot', false, true)::text"}}},
	} {
		run("carol", body)
		waitNoSlot(t, "pgw_http_slot")
		row := run("dave", map[string]any{"stmt": "SELECT count(*) FROM pg_replication_slots WHERE active_pid = pg_backend_pid()"})["rows"].([]any)[0].([]any)
		if fmt.Sprint(row[0]) != "0" {
			t.Fatalf("after carol's %v, dave's request holds a replication slot", body)
		}
	}
}

// A backend that accepts and then says nothing: the HTTP request's connect
// runs out of connect_timeout and is answered 502 08006, never 400 57014
// `canceling statement due to http.statement_timeout`, which it was
// before (no statement ever ran).
func TestAnHTTPConnectThatTimesOutIsNoStatementTimeout(t *testing.T) {
	silent := localServer(t, func(net.Conn) {}) // accepts, holds, never answers
	g := startGatewayWith(t, gwOptions{http: true, backendPort: silent, backend: `connect_timeout = "1s"`},
		httpRules+passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	status, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, basic("alice", "alice-Pass-1"))
	if status != 502 || errCode(out) != "08006" {
		t.Fatalf("a backend that never answers the login: %d %v, want 502 08006", status, out)
	}
}

// Guesses of one (address, user) sent together were all checked at once
// when the pair had no failure yet: the backoff only began with their
// answers, so a client that opened 30 connections at a time got 30
// guesses for every one the throttle allows afterwards, again each time
// the pair was forgotten. Now attempts of a pair with no recent success
// are checked one at a time until one succeeds: the others wait for its
// outcome (a failure starts the backoff, a success lets them all go on).
// A client whose logins succeed is not held: its concurrent requests go
// ahead together, as before.
func TestGuessesSentTogetherAreCheckedOneAtATime(t *testing.T) {
	g := startGatewayWith(t, gwOptions{http: true, throttle: `failure_delay = "3s"` + "\n" + `max_delay = "30s"`},
		httpRules+"\n[[hba]]\nprotocol = \"pg\"\nmethod = \"scram-sha-256\"\n",
		[]testUser{{name: "alice", password: "alice-Pass-1"}, {name: "bob", password: "bob-Pass-22"}, {name: "carol", password: "carol-Pass-3"}})
	const n = 30
	burst := func(user, pw string, timeout time.Duration) (answered int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pw := pw
				if strings.HasPrefix(pw, "wrong") {
					pw = fmt.Sprintf("%s-%d", pw, i) // a guess of its own
				}
				if _, err := selectOne(context.Background(), &http.Client{Timeout: timeout}, g, user, pw, ""); err == nil {
					mu.Lock()
					answered++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return answered
	}
	if got := burst("alice", "wrong-password", 1500*time.Millisecond); got != 1 {
		t.Fatalf("%d of %d guesses sent together were checked within 1.5 s, want 1 (the others wait for the backoff)", got, n)
	}
	// The right password, sent together from a fresh pair: the first
	// login's success lets the others through at once.
	if got := burst("bob", "bob-Pass-22", 5*time.Second); got != n {
		t.Fatalf("%d of %d right logins sent together were answered", got, n)
	}
	// The same on the wire, where a SCRAM exchange is the check.
	var wg sync.WaitGroup
	var mu sync.Mutex
	answered := 0
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			_, err := pgx.Connect(ctx, g.connString("carol", fmt.Sprintf("wrong-%d", i), "postgres"))
			var pe *pgconn.PgError
			if errors.As(err, &pe) {
				mu.Lock()
				answered++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if answered != 1 {
		t.Fatalf("%d of 10 wire guesses sent together were checked within 1.5 s, want 1", answered)
	}
}

// impostorBackend listens where a backend should be and does what a
// program that took the backend's address (a local user binding the port
// while PostgreSQL is down, a spoofed DNS name, a man in the middle of a
// connection without verify-full) would do: it refuses TLS and asks for
// the password in clear. It sends what it was given on the channel.
func impostorBackend(t *testing.T) (port int, got chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got = make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				be := pgproto3.NewBackend(c, c)
				for {
					m, err := be.ReceiveStartupMessage()
					if err != nil {
						return
					}
					if _, ok := m.(*pgproto3.SSLRequest); ok {
						c.Write([]byte("N"))
						continue
					}
					break
				}
				be.Send(&pgproto3.AuthenticationCleartextPassword{})
				if err := be.Flush(); err != nil {
					return
				}
				be.SetAuthType(pgproto3.AuthTypeCleartextPassword)
				m, err := be.Receive()
				if p, ok := m.(*pgproto3.PasswordMessage); ok && err == nil {
					got <- p.Password
				} else {
					got <- ""
				}
				be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: "password authentication failed"})
				be.Flush()
			}(c)
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, got
}

// TestRequireAuthKeepsTheBackendPasswordFromAnImpostor: with libpq's
// default, which pgwarden keeps, whatever answers at the backend's
// address and asks for the password in clear gets [backend] password.
// require_auth = "scram-sha-256" ends the connection before any password
// is sent, while the real backend, which asks for SCRAM, still serves.
func TestRequireAuthKeepsTheBackendPasswordFromAnImpostor(t *testing.T) {
	port, got := impostorBackend(t)
	routes := fmt.Sprintf("\n[[databases]]\nname = \"impostor\"\nbackend_dbname = \"postgres\"\nport = %d\n", port)
	g := startGateway(t, routes+trustRules, nil)
	if _, err := g.connect("alice", "", "impostor"); err == nil {
		t.Fatal("the impostor let a client in")
	}
	select {
	case pw := <-got:
		if pw != backendPassword {
			t.Fatalf("with require_auth unset the impostor got %q; the test expects it to be given the backend password, as libpq gives it", pw)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the impostor was never asked")
	}

	g.reloadAfter(func() {
		g.opts.backend = `require_auth = "scram-sha-256"`
		g.writeConfig(routes + trustRules)
	})
	_, err := g.connect("alice", "", "impostor")
	wantPgError(t, err, "08006", "could not connect to the backend server")
	select {
	case pw := <-got:
		if pw != "" {
			t.Fatal("require_auth = scram-sha-256, and the impostor was given the backend password")
		}
	case <-time.After(3 * time.Second):
		// It closed before the impostor could read anything: nothing sent.
	}
	g.waitLog(`authentication method requirement \"scram-sha-256\" failed: server requested password authentication`, 1)
	c := g.mustConnect("alice", "", "postgres")
	if got := queryOne(t, c, "SELECT current_user"); got != "alice" {
		t.Fatalf("the real backend under require_auth: %s", got)
	}
}

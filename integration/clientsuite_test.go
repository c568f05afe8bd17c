package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPgxsOwnSuitePassesThroughThePlainAndTheTLSRelay runs pgx's own tests
// of its protocol layer (package pgconn, from the module cache: the pgx
// this build uses) with their database behind pgwarden, as pgx's CI runs
// them against PostgreSQL: cancels, COPY both ways, pipelines, large
// results, notices, notifications, errors mid-stream, context deadlines,
// each a real client's expectation of a PostgreSQL server. Once in an
// event loop, once over TLS (goroutines), SCRAM logins and backend reuse
// on both.
func TestPgxsOwnSuitePassesThroughThePlainAndTheTLSRelay(t *testing.T) {
	src := pgxSource(t)
	// What pgx's ci/setup_test.bash creates, for a superuser role as
	// there (tests create types and tables and read pg_stat_activity).
	for _, sql := range []string{
		"DROP DATABASE IF EXISTS pgx_test WITH (FORCE)",
		"DROP ROLE IF EXISTS pgx_suite",
		fmt.Sprintf("CREATE ROLE pgx_suite LOGIN SUPERUSER PASSWORD '%s'", backendPassword),
		"CREATE DATABASE pgx_test OWNER pgx_suite",
	} {
		if err := pg.Exec(sql); err != nil {
			t.Fatal(err)
		}
	}
	if err := pg.ExecIn("pgx_test", "CREATE EXTENSION hstore; CREATE EXTENSION ltree; CREATE DOMAIN uint64 AS numeric(20,0)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pg.Exec("DROP DATABASE IF EXISTS pgx_test WITH (FORCE)")
		pg.Exec("DROP ROLE IF EXISTS pgx_suite")
	})
	rules := "\n[[hba]]\nmethod = \"scram-sha-256\"\n"
	users := []testUser{{name: "pgx_suite", password: "pgx-Suite-pw1"}}
	for _, tc := range []struct {
		name    string
		sslmode string
		start   func() *gateway
	}{
		{"event loop", "disable", func() *gateway { return startGateway(t, rules, users) }},
		{"tls", "require", func() *gateway { return startTLSGatewayIn(t, t.TempDir(), gwOptions{}, rules, users) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.start()
			cmd := exec.Command("go", "test", "-count=1", "-timeout=10m", "./pgconn/")
			cmd.Dir = src
			cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod",
				fmt.Sprintf("PGX_TEST_DATABASE=host=127.0.0.1 port=%d user=pgx_suite password=pgx-Suite-pw1 dbname=pgx_test sslmode=%s", g.port, tc.sslmode))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("pgx's pgconn tests through pgwarden: %v\n%s", err, failures(string(out)))
			}
		})
	}
}

// pgxSource copies the pgx module this build uses out of the module cache
// (read-only there) so its tests can run with their own go.mod.
func pgxSource(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", "github.com/jackc/pgx/v5").Output()
	if err != nil {
		t.Fatalf("go mod download pgx: %v", err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		t.Fatalf("no pgx source: %v %s", err, out)
	}
	dst := filepath.Join(t.TempDir(), "pgx")
	if out, err := exec.Command("cp", "-r", m.Dir, dst).CombinedOutput(); err != nil {
		t.Fatalf("copying pgx: %v %s", err, out)
	}
	if out, err := exec.Command("chmod", "-R", "u+w", dst).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v %s", err, out)
	}
	return dst
}

// failures keeps the lines of a go test output that say what failed.
func failures(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "FAIL") || strings.Contains(l, "Error") || strings.Contains(l, "_test.go:") || strings.HasPrefix(l, "panic") {
			keep = append(keep, l)
		}
	}
	if len(keep) > 200 {
		keep = keep[:200]
	}
	return strings.Join(keep, "\n")
}

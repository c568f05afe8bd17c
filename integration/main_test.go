// Package integration drives the built pgwarden binary with real clients
// (pgx, psql, raw sockets) against a real PostgreSQL the tests start.
package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	// pgwardenBin is the pgwarden built for this test run, with -race:
	// the gateway is concurrent code.
	pgwardenBin string
	// cliBin is the same without -race, for the many short CLI runs
	// (check, explain, hash-password), where the race runtime's start-up
	// cost would dominate and there is no concurrency to check.
	cliBin string
	// pg is the shared backend cluster.
	pg *pgCluster

	// secrets are every password and token the tests used; TestMain
	// checks that none of them appears in any gateway log.
	secretsMu sync.Mutex
	secrets   = map[string]bool{backendPassword: true}
	// allLogs collects every gateway's log of the run.
	logsMu  sync.Mutex
	allLogs []*lockedBuffer
)

func noteSecret(s string) {
	secretsMu.Lock()
	secrets[s] = true
	secretsMu.Unlock()
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "pgwarden-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	os.Chmod(tmp, 0o755)
	pgwardenBin = filepath.Join(tmp, "pgwarden")
	build := exec.Command("go", "build", "-race", "-o", pgwardenBin, "../cmd/pgwarden")
	if os.Getenv("PGWARDEN_TEST_NORACE") != "" {
		build = exec.Command("go", "build", "-o", pgwardenBin, "../cmd/pgwarden")
	}
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building pgwarden: %v\n%s", err, out)
		return 1
	}
	cliBin = filepath.Join(tmp, "pgwarden-cli")
	if out, err := exec.Command("go", "build", "-o", cliBin, "../cmd/pgwarden").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building pgwarden: %v\n%s", err, out)
		return 1
	}
	if _, err := findPGBin(); err != nil {
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "integration:", err)
			return 1
		}
		fmt.Fprintln(os.Stderr, "integration tests skipped:", err)
		return 0
	}
	pg, err = startCluster("")
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting PostgreSQL:", err)
		return 1
	}
	defer pg.Destroy()
	if err := createRoles(pg); err != nil {
		fmt.Fprintln(os.Stderr, "creating roles:", err)
		return 1
	}
	code := m.Run()
	if leaked := secretsInLogs(); leaked != "" {
		fmt.Fprintln(os.Stderr, "FAIL: a secret appears in the gateway logs:", leaked)
		code = 1
	}
	return code
}

// ownCluster starts a PostgreSQL of the test's own (one it may stop or
// restart) with the roles the shared one has; it is destroyed when the
// test ends, after the gateways the test started.
func ownCluster(t *testing.T) *pgCluster {
	t.Helper()
	own, err := startCluster("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Destroy() })
	if err := createRoles(own); err != nil {
		t.Fatal(err)
	}
	return own
}

func createRoles(c *pgCluster) error {
	var sql strings.Builder
	for _, r := range []string{"alice", "bob", "carol", "dave", "app_rw", "svc_reports", "svc_etl", "ops1", "eve", "erin"} {
		fmt.Fprintf(&sql, "CREATE ROLE %s LOGIN PASSWORD '%s';", r, backendPassword)
	}
	if err := c.Exec(sql.String()); err != nil {
		return err
	}
	return c.Exec("CREATE DATABASE app_prod")
}

// secretsInLogs returns a description of the first secret found in any log.
func secretsInLogs() string {
	logsMu.Lock()
	defer logsMu.Unlock()
	secretsMu.Lock()
	defer secretsMu.Unlock()
	for _, b := range allLogs {
		text := b.String()
		for s := range secrets {
			if len(s) >= 6 && strings.Contains(text, s) {
				return fmt.Sprintf("%q", s[:3]+"...")
			}
		}
	}
	return ""
}

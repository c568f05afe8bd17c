package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pgbench reads results through libpq's asynchronous API, as pg_basebackup's
// WAL receiver, pg_recvlogical and psycopg 3 do: it polls the socket while
// a result is unfinished. libpq (15's, as deployed widely) reads a TLS record
// larger than 8 KiB in part, and the rest, decrypted inside OpenSSL, is no
// readiness the poll sees. crypto/tls writes records of 16 KiB, PostgreSQL
// of 8 KiB: a result ending just short of 32 KiB after 200 KiB of smaller
// rows, on a fresh connection, hung pgbench through pgwarden over TLS in
// every run of 100 such transactions, never directly. Both relays (backend
// reuse on and off) send records of at most 8 KiB.
func TestAnAsynchronousLibpqClientGetsEveryResultOverTLS(t *testing.T) {
	pgbench := filepath.Join(pg.bindir, "pgbench")
	if _, err := os.Stat(pgbench); err != nil {
		t.Fatalf("pgbench, which comes with the PostgreSQL server binaries: %v", err)
	}
	script := filepath.Join(t.TempDir(), "results.sql")
	if err := os.WriteFile(script, []byte(`\set n random(32754, 32757)
SELECT repeat('x', 1000) FROM generate_series(1, 200);
SELECT repeat('x', :n);
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, reuse := range []bool{true, false} {
		t.Run(fmt.Sprintf("reuse=%v", reuse), func(t *testing.T) {
			dir := t.TempDir()
			g := startTLSGatewayIn(t, dir, gwOptions{backend: fmt.Sprintf("reuse = %v", reuse)}, `
[[hba]]
method = "scram-sha-256"
`, []testUser{{name: "alice", password: "alice-Pass-1"}})
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			const transactions = 40
			cmd := exec.CommandContext(ctx, pgbench, "-h", "127.0.0.1", "-p", fmt.Sprint(g.port), "-U", "alice",
				"-n", "-C", "-t", fmt.Sprint(transactions), "-f", script, "postgres")
			cmd.Env = append(os.Environ(), "PGSSLMODE=require", "PGPASSWORD=alice-Pass-1", "PGCONNECT_TIMEOUT=20")
			cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGKILL) }
			cmd.WaitDelay = 5 * time.Second
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("pgbench over TLS through pgwarden still waited for a result after %v:\n%s", 90*time.Second, out)
			}
			want := fmt.Sprintf("number of transactions actually processed: %d/%d", transactions, transactions)
			if err != nil || !strings.Contains(string(out), want) {
				t.Fatalf("pgbench over TLS through pgwarden: %v\n%s", err, out)
			}
		})
	}
}

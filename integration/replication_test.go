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

	"github.com/jackc/pgx/v5"
)

// TestABaseBackupAndLogicalDecodingStreamThroughPgwarden drives the
// replication protocol's own clients through the gateway, on the plain and
// the TLS relay: pg_basebackup with its WAL streamed beside it (a second
// walsender session), checked by pg_verifybackup, and pg_recvlogical
// creating a slot, streaming the changes of a transaction to a given end
// position with its standby status messages, and dropping the slot. Both
// are CopyBoth sessions, where the relay carries data in both directions
// at once and no ReadyForQuery comes until the copy ends; the HBA tests
// judge who gets a walsender, this one that what they get works.
func TestABaseBackupAndLogicalDecodingStreamThroughPgwarden(t *testing.T) {
	own, err := startCluster("wal_level = logical\nmax_wal_senders = 10\nmax_replication_slots = 10")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(own.Destroy)
	if err := createRoles(own); err != nil {
		t.Fatal(err)
	}
	if err := own.Exec("ALTER ROLE alice REPLICATION; CREATE TABLE repl_probe (id int PRIMARY KEY, v text); GRANT ALL ON repl_probe TO alice"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	g := startTLSGatewayIn(t, dir, gwOptions{backendPort: own.port}, `
[[hba]]
database = ["replication"]
user = ["alice"]
method = "scram-sha-256"

[[hba]]
method = "scram-sha-256"
`, []testUser{{name: "alice", password: "alice-Pass-1"}})
	tool := func(ctx context.Context, name string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, filepath.Join(own.bindir, name), args...)
		cmd.Env = append(os.Environ(), "PGPASSWORD=alice-Pass-1", "PGCONNECT_TIMEOUT=20")
		// pg_basebackup streams WAL from a forked child, which holds the
		// output pipe: a tool killed at the deadline must take its
		// children with it, and its output must not be waited for
		// beyond that, or the test hangs instead of failing (a CI run
		// did, for the package's whole 20 minutes: the WAL receiver
		// waited on its socket with the end of its stream inside
		// OpenSSL, see TestAnAsynchronousLibpqClientGetsEveryResultOverTLS).
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for i, sslmode := range []string{"disable", "require"} {
		t.Run("sslmode="+sslmode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			conn := fmt.Sprintf("host=127.0.0.1 port=%d user=alice sslmode=%s", g.port, sslmode)

			backup := filepath.Join(t.TempDir(), "backup")
			if out, err := tool(ctx, "pg_basebackup", "-d", conn, "-D", backup, "-X", "stream", "-c", "fast", "--no-sync", "--verbose"); err != nil {
				t.Fatalf("pg_basebackup through pgwarden: %v\n%s", err, out)
			}
			if out, err := tool(ctx, "pg_verifybackup", backup); err != nil {
				t.Fatalf("pg_verifybackup of the backup taken through pgwarden: %v\n%s", err, out)
			}

			slot := fmt.Sprintf("probe_slot_%d", i)
			dbConn := conn + " dbname=postgres"
			if out, err := tool(ctx, "pg_recvlogical", "-d", dbConn, "--slot", slot, "--create-slot", "-P", "test_decoding"); err != nil {
				t.Fatalf("pg_recvlogical --create-slot through pgwarden: %v\n%s", err, out)
			}
			want := make([]string, 0, 50)
			var sql strings.Builder
			sql.WriteString("BEGIN;")
			for n := 1; n <= 50; n++ {
				id := i*1000 + n
				fmt.Fprintf(&sql, "INSERT INTO repl_probe VALUES (%d, 'v%d');", id, id)
				want = append(want, fmt.Sprintf("id[integer]:%d v[text]:'v%d'", id, id))
			}
			sql.WriteString("COMMIT;")
			direct, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", own.sockDir, own.port))
			if err != nil {
				t.Fatal(err)
			}
			defer direct.Close(context.Background())
			if _, err := direct.Exec(ctx, sql.String()); err != nil {
				t.Fatal(err)
			}
			var end string
			if err := direct.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
				t.Fatal(err)
			}
			changes := filepath.Join(t.TempDir(), "changes")
			if out, err := tool(ctx, "pg_recvlogical", "-d", dbConn, "--slot", slot, "--start", "--endpos", end,
				"-s", "1", "--no-loop", "-f", changes); err != nil {
				t.Fatalf("pg_recvlogical --start through pgwarden: %v\n%s", err, out)
			}
			got, err := os.ReadFile(changes)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range want {
				if !strings.Contains(string(got), w) {
					t.Fatalf("the changes streamed through pgwarden lack %q:\n%s", w, got)
				}
			}
			if !strings.Contains(string(got), "COMMIT") {
				t.Fatalf("the changes streamed through pgwarden lack the COMMIT:\n%s", got)
			}
			if out, err := tool(ctx, "pg_recvlogical", "-d", dbConn, "--slot", slot, "--drop-slot"); err != nil {
				t.Fatalf("pg_recvlogical --drop-slot through pgwarden: %v\n%s", err, out)
			}
			var slots int
			if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots").Scan(&slots); err != nil || slots != 0 {
				t.Fatalf("replication slots left: %d (%v)", slots, err)
			}
		})
	}
}

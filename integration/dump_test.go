package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// pgTool runs one of PostgreSQL's client programs (pg_dump, pg_restore,
// pg_isready) with a connection string and returns its standard output;
// a failure fails the test with what the program said.
func pgTool(t *testing.T, prog string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=20")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", prog, args, err, errOut.String())
	}
	return out.Bytes()
}

// restrictLine matches the \restrict and \unrestrict lines with which
// pg_dump (since 17.6, 16.10, 15.14...) guards a plain script: their key
// is random in every dump.
var restrictLine = regexp.MustCompile(`(?m)^\\(un)?restrict \S+$`)

// plainDump is a script with its random keys taken out.
func plainDump(b []byte) []byte { return restrictLine.ReplaceAll(b, []byte(`\${1}restrict KEY`)) }

// firstDifference names the first line at which two dumps differ.
func firstDifference(a, b []byte) string {
	la, lb := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := 0; i < len(la) && i < len(lb); i++ {
		if !bytes.Equal(la[i], lb[i]) {
			return fmt.Sprintf("line %d: %.200q against %.200q", i+1, la[i], lb[i])
		}
	}
	return fmt.Sprintf("%d lines against %d", len(la), len(lb))
}

// A backup and a restore through pgwarden give what they give directly:
// pg_dump's catalog queries, COPY out, large objects (read with libpq's
// fast-path calls), a parallel dump whose workers share the first
// connection's snapshot across backends, and pg_restore's COPY in and
// large-object writes. With backend reuse on, as users run it.
func TestPgDumpAndPgRestoreThroughPgwardenMatchADirectDump(t *testing.T) {
	for _, db := range []string{"dump_src", "dump_dst"} {
		if err := pg.Exec("DROP DATABASE IF EXISTS " + db); err != nil {
			t.Fatal(err)
		}
		if err := pg.Exec("CREATE DATABASE " + db + " OWNER alice"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		pg.Exec("DROP DATABASE IF EXISTS dump_src WITH (FORCE)")
		pg.Exec("DROP DATABASE IF EXISTS dump_dst WITH (FORCE)")
	})
	g := startGateway(t, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	src := g.mustConnect("alice", "alice-Pass-1", "dump_src")
	ctx := context.Background()
	if _, err := src.Exec(ctx, `
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, joined timestamptz DEFAULT '2026-01-02 03:04:05+00', note jsonb);
INSERT INTO customers (name, note) SELECT 'c' || i, jsonb_build_object('i', i) FROM generate_series(1, 5000) i;
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer int REFERENCES customers, amount numeric(12,2), payload bytea);
INSERT INTO orders (customer, amount, payload) SELECT 1 + i % 5000, i * 1.25, decode(repeat('ab', 300), 'hex') FROM generate_series(1, 20000) i;
CREATE INDEX orders_customer ON orders (customer);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 100;
CREATE FUNCTION total(c int) RETURNS numeric LANGUAGE sql AS 'SELECT sum(amount) FROM orders WHERE customer = c';
COMMENT ON TABLE customers IS 'people who buy';
SELECT lo_from_bytea(424242, convert_to(repeat('large object ', 20000), 'UTF8'));
`); err != nil {
		t.Fatal(err)
	}
	src.Close(ctx)

	through := func(db string) string { return g.connString("alice", "alice-Pass-1", db) }
	direct := fmt.Sprintf("host=127.0.0.1 port=%d user=alice password=%s dbname=dump_src sslmode=disable", pg.port, backendPassword)
	noteSecret("alice-Pass-1")

	if out := pgTool(t, "pg_isready", "-d", through("dump_src")); !bytes.Contains(out, []byte("accepting connections")) {
		t.Fatalf("pg_isready through pgwarden: %s", out)
	}

	want := plainDump(pgTool(t, "pg_dump", "--no-sync", "-d", direct))
	if got := plainDump(pgTool(t, "pg_dump", "--no-sync", "-d", through("dump_src"))); !bytes.Equal(got, want) {
		t.Fatalf("the plain dump through pgwarden differs from the direct one: %s", firstDifference(got, want))
	}

	dir := t.TempDir()
	custom := filepath.Join(dir, "src.dump")
	pgTool(t, "pg_dump", "--no-sync", "-Fc", "-f", custom, "-d", through("dump_src"))
	parallel := filepath.Join(dir, "src.dir")
	pgTool(t, "pg_dump", "--no-sync", "-Fd", "-j", "3", "-f", parallel, "-d", through("dump_src"))
	for _, archive := range []string{custom, parallel} {
		// The archive lists what the direct dump holds.
		if got := plainDump(pgTool(t, "pg_restore", "-f", "-", archive)); !bytes.Equal(got, want) {
			t.Fatalf("%s, made through pgwarden, restores to another script than the direct dump: %s", filepath.Base(archive), firstDifference(got, want))
		}
	}

	pgTool(t, "pg_restore", "-j", "2", "-d", through("dump_dst"), parallel)
	restored := plainDump(pgTool(t, "pg_dump", "--no-sync", "-d", through("dump_dst")))
	if !bytes.Equal(restored, want) {
		t.Fatalf("the database restored through pgwarden dumps differently from its source: %s", firstDifference(restored, want))
	}
	dst := g.mustConnect("alice", "alice-Pass-1", "dump_dst")
	if got := queryOne(t, dst, "SELECT count(*) || ' ' || sum(amount) || ' ' || length(lo_get(424242)) FROM orders"); got != "20000 250012500.00 260000" {
		t.Fatalf("restored data: %s", got)
	}
}

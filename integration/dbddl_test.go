package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ddlRole owns the databases of these tests and may create them.
const ddlRole = "ddl_owner"

func ddlSetup(t *testing.T, dbs ...string) {
	t.Helper()
	if err := pg.Exec(fmt.Sprintf("DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN CREATEDB PASSWORD '%s'", ddlRole, ddlRole, backendPassword)); err != nil {
		// Another test's databases may still be owned by it.
		if !strings.Contains(err.Error(), "2BP01") {
			t.Fatal(err)
		}
	}
	for _, db := range dbs {
		dropDatabase(db)
		if err := pg.Exec(fmt.Sprintf("CREATE DATABASE %s OWNER %s", db, ddlRole)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dropDatabase(db) })
	}
}

// dropDatabase drops db on the backend directly, whoever is connected.
func dropDatabase(db string) {
	pg.Exec(fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", db))
}

// backendsOn counts the backend sessions connected to db, as PostgreSQL
// counts them when it drops db.
func backendsOn(t *testing.T, db string) int {
	t.Helper()
	c, err := pgx.Connect(context.Background(), fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", pg.sockDir, pg.port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", db).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// useAndLeave logs in to db through g, runs a query and leaves, and waits
// until the backend is parked (still connected to db).
func useAndLeave(t *testing.T, g *gateway, conn, db string) {
	t.Helper()
	c := g.mustConnectString(conn + " dbname=" + db)
	queryOne(t, c, "SELECT current_database()")
	closeAndWait(c)
	for deadline := time.Now().Add(5 * time.Second); backendsOn(t, db) != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("no backend parked on %s: %d connected", db, backendsOn(t, db))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// execSimple runs sql with the simple query protocol, as psql does.
func execSimple(c *pgx.Conn, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.PgConn().Exec(ctx, sql).ReadAll()
	return err
}

// A backend parked for reuse is a session PostgreSQL counts: without
// closing it, DROP DATABASE, ALTER DATABASE ... RENAME and CREATE DATABASE
// ... TEMPLATE fail with 55006 "database is being accessed by other users"
// after waiting 5 seconds, which breaks every test suite that creates a
// database, uses it and drops it. Each relay closes the idle backends of
// the databases such a statement names; a database a client is really
// connected to is still refused, as PostgreSQL refuses it.
func TestDatabaseStatementsAreNotBlockedByIdleBackends(t *testing.T) {
	for _, tc := range relays {
		t.Run(tc.name, func(t *testing.T) {
			ddlSetup(t, "ddl_a", "ddl_tpl", "ddl_c")
			dropDatabase("ddl_b")
			dropDatabase("ddl_a2")
			t.Cleanup(func() { dropDatabase("ddl_b"); dropDatabase("ddl_a2") })
			g := tc.start(t)
			conn := strings.Replace(g.connString(ddlRole, "", "postgres"), " dbname=postgres", "", 1)
			if tc.tls {
				conn = strings.Replace(conn, "sslmode=disable", "sslmode=require", 1)
			}
			admin := g.mustConnectString(conn + " dbname=postgres")

			useAndLeave(t, g, conn, "ddl_tpl")
			if err := execSimple(admin, "CREATE DATABASE ddl_b TEMPLATE ddl_tpl"); err != nil {
				t.Fatalf("CREATE DATABASE from a template with a parked backend: %v", err)
			}
			useAndLeave(t, g, conn, "ddl_a")
			if err := execSimple(admin, `ALTER DATABASE "ddl_a" RENAME TO ddl_a2`); err != nil {
				t.Fatalf("RENAME of a database with a parked backend: %v", err)
			}
			// The extended protocol, and a comment inside the statement.
			// (Not ddl_a2: for 5 seconds after a statement named it, its
			// backends are closed rather than parked.)
			useAndLeave(t, g, conn, "ddl_c")
			if _, err := admin.Exec(context.Background(), "DROP /* gone */ DATABASE IF EXISTS DDL_C", pgx.QueryExecModeExec); err != nil {
				t.Fatalf("DROP DATABASE of a database with a parked backend: %v", err)
			}
			if tc.tls || !tc.loop {
				return // the rest is the relays' common path: once is enough
			}
			// A client that is connected keeps its database, as directly.
			user := g.mustConnectString(conn + " dbname=ddl_b")
			queryOne(t, user, "SELECT 1::text")
			err := execSimple(admin, "DROP DATABASE ddl_b")
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "55006" {
				t.Fatalf("DROP DATABASE with a client connected: %v, want 55006", err)
			}
			queryOne(t, user, "SELECT 1::text")
		})
	}
}

// The HTTP frontend's pooled connections count too, and a statement from
// either frontend closes the idle ones of both.
func TestDatabaseStatementsAreNotBlockedByIdleHTTPConnections(t *testing.T) {
	ddlSetup(t, "ddl_h1", "ddl_h2")
	g := startGatewayWith(t, gwOptions{http: true, httpSection: fmt.Sprintf("default_user = %q", ddlRole)}, trustRules, nil)
	sqlAs := func(db, stmt string) {
		t.Helper()
		code, _, out := httpDo(t, "POST", g.httpURL()+"/_sql?db="+db, `{"stmt":`+jsonText(t, stmt)+`}`, nil)
		if code != http.StatusOK {
			t.Fatalf("%s on %s: %d %v", stmt, db, code, out)
		}
	}
	conn := g.connString(ddlRole, "", "postgres")

	// Used over HTTP, dropped over the wire.
	sqlAs("ddl_h1", "SELECT 1")
	if n := backendsOn(t, "ddl_h1"); n != 1 {
		t.Fatalf("%d HTTP connections on ddl_h1, want 1 pooled", n)
	}
	admin := g.mustConnectString(conn)
	if err := execSimple(admin, "DROP DATABASE ddl_h1"); err != nil {
		t.Fatalf("DROP DATABASE over the wire with a pooled HTTP connection: %v", err)
	}
	// Used over the wire and over HTTP, dropped over HTTP.
	useAndLeave(t, g, strings.Replace(conn, " dbname=postgres", "", 1), "ddl_h2")
	sqlAs("ddl_h2", "SELECT 1")
	sqlAs("postgres", "DROP DATABASE ddl_h2")
	if n := backendsOn(t, "ddl_h2"); n != 0 {
		t.Fatalf("%d sessions on a dropped database", n)
	}
}

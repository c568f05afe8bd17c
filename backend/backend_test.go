package backend

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/config"
)

func TestABackendRefusalOfPgwardensLoginReadsAsOne(t *testing.T) {
	r := LoginRefusal(&pgconn.PgError{Code: "28P01", Message: `password authentication failed for user "alice"`}, "alice")
	if r == nil || r.Code != "28P01" || r.Message != `the backend refused pgwarden's login as role "alice"` ||
		r.Detail != `The backend said: password authentication failed for user "alice"` || r.Hint == "" {
		t.Fatalf("%+v", r)
	}
	for _, pe := range []*pgconn.PgError{{Code: "28000", Message: `role "x" does not exist`}, {Code: "3D000"}, {Code: "53300"}} {
		if LoginRefusal(pe, "x") != nil {
			t.Errorf("%s is clear already and must pass as it is", pe.Code)
		}
	}
}

func TestAnAddressIsAUnixSocketOrTCP(t *testing.T) {
	if n, a := Address("/var/run/postgresql", 5433); n != "unix" || a != "/var/run/postgresql/.s.PGSQL.5433" {
		t.Fatalf("%s %s", n, a)
	}
	if n, a := Address("::1", 5432); n != "tcp" || a != "[::1]:5432" {
		t.Fatalf("%s %s", n, a)
	}
}

// libpq's home-folder defaults and environment do not reach a backend
// connection: only the configuration does.
func TestTheBackendConfigComesFromTheConfigurationAlone(t *testing.T) {
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".postgresql"), 0o700)
	for _, f := range []string{"postgresql.crt", "postgresql.key", "root.crt"} {
		os.WriteFile(filepath.Join(home, ".postgresql", f), []byte("not a certificate"), 0o600)
	}
	os.WriteFile(filepath.Join(home, ".pgpass"), []byte("*:*:*:*:from-pgpass\n"), 0o600)
	t.Setenv("HOME", home)
	t.Setenv("PGSSLKEY", "/nonexistent/key")
	t.Setenv("PGSSLCERT", "/nonexistent/cert")
	t.Setenv("PGSSLROOTCERT", "/nonexistent/root")
	cfg := config.Default()
	cfg.Backend.SSLMode = "require"
	pc, err := Config(cfg, Target{Host: "127.0.0.1", Port: 5432, Role: "alice", Database: "app"}, map[string]string{"application_name": "x"})
	if err != nil {
		t.Fatalf("a home folder and environment the configuration does not name broke the backend config: %v", err)
	}
	if pc.Password != "" || pc.User != "alice" || pc.Database != "app" || pc.RuntimeParams["application_name"] != "x" {
		t.Fatalf("%+v", pc)
	}
	if pc.TLSConfig == nil || len(pc.TLSConfig.Certificates) != 0 {
		t.Fatal("a client certificate the configuration does not name was loaded")
	}
}

// [auth_query] logs in with its own password, else [backend] password, as
// docs/configuration.md says; the fallback was documented and missing.
func TestTheAuthQueryRoleFallsBackToTheBackendPassword(t *testing.T) {
	cfg := config.Default()
	cfg.Backend.Password = "backend-pw"
	cfg.AuthQuery = &config.AuthQuery{Mode: "lookup", Query: "SELECT 1", Database: "postgres", User: "pgwarden_auth"}
	for _, c := range []struct{ own, want string }{{"", "backend-pw"}, {"own-pw", "own-pw"}} {
		cfg.AuthQuery.Password = c.own
		q, err := NewAuthQuery(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got := q.pool.Config().ConnConfig.Password
		q.Close()
		if got != c.want {
			t.Fatalf("[auth_query] password %q: the lookup logs in with %q, want %q", c.own, got, c.want)
		}
	}
}

// Only the names [[databases]] lists reach its entries' databases: an
// unlisted name that is an entry's backend database on the same server is
// refused, whichever way the entry arrives there.
func TestOnlyAListedNameReachesARoutedDatabase(t *testing.T) {
	cfg := config.Default()
	cfg.Backend.Host, cfg.Backend.Port = "127.0.0.1", 5432
	cfg.Databases = []config.Database{
		{Name: "app", BackendDBName: "app_prod"},
		{Name: "same", BackendDBName: "same_prod", Host: "127.0.0.1", Port: 5432}, // the default server, written out
		{Name: "far", BackendDBName: "far_prod", Port: 5433},                      // another server
		{Name: "listed_twice", BackendDBName: "app_prod"},
		{Name: "app_v2", BackendDBName: "app_v2"},
		// The default server written other ways.
		{Name: "lh", BackendDBName: "lh_prod", Host: "localhost"},
		{Name: "sock", BackendDBName: "sock_prod", Host: "/var/run/postgresql"},
		{Name: "mapped", BackendDBName: "mapped_prod", Host: "::ffff:127.0.0.1"},
		{Name: "v6", BackendDBName: "v6_prod", Host: "[::1]"},
		{Name: "other_loopback", BackendDBName: "ol_prod", Host: "127.0.0.2"},
		{Name: "remote", BackendDBName: "remote_prod", Host: "db.example.com"},
	}
	for db, refusedFor := range map[string]string{
		"app": "", "listed_twice": "", "app_v2": "", "postgres": "",
		"app_prod":    "app",
		"same_prod":   "same",
		"far_prod":    "", // the default server's far_prod is another database
		"lh_prod":     "lh",
		"sock_prod":   "sock",
		"mapped_prod": "mapped",
		"v6_prod":     "v6",
		"ol_prod":     "other_loopback",
		"remote_prod": "", // db.example.com is not the default server
	} {
		tgt, err := Route(cfg, "alice", nil, Credentials{}, db)
		var routed *RoutedDatabaseError
		switch {
		case refusedFor == "" && err != nil:
			t.Errorf("%s: refused: %v", db, err)
		case refusedFor != "" && (!errors.As(err, &routed) || routed.Entry != refusedFor || routed.SQLState() != "3D000"):
			t.Errorf("%s: want a refusal naming entry %s, got %+v, %v", db, refusedFor, tgt, err)
		}
	}
}

func TestBackendHostsWrittenTwoWaysAreOneServer(t *testing.T) {
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"db.example.com", "DB.Example.COM.", true},
		{"10.0.0.5", "::ffff:10.0.0.5", true},
		{"2001:db8::1", "2001:DB8:0:0:0:0:0:1", true},
		{"fe80::1%eth0", "fe80::1", true},
		{"localhost", "127.0.0.1", true},
		{"localhost", "/tmp", true},
		{"0.0.0.0", "::1", true},
		{"pg.localhost", "localhost", true},
		{"db.example.com", "db2.example.com", false},
		{"10.0.0.5", "10.0.0.6", false},
		{"10.0.0.5", "localhost", false},
	} {
		if got := sameHost(c.a, c.b); got != c.same {
			t.Errorf("sameHost(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

// Two DNS names of one server, or a name of this machine, are one server
// once the configuration loads: an unlisted name that is such an entry's
// backend database is refused like one written the default's way.
func TestAnEntryWhoseHostIsAnotherNameOfTheDefaultServerGuardsItsDatabase(t *testing.T) {
	dns := map[string][]netip.Addr{
		"db-main.internal":   {netip.MustParseAddr("10.0.0.5")},
		"pg.internal":        {netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("10.0.0.5")},
		"analytics.internal": {netip.MustParseAddr("10.0.0.7")},
		"me.internal":        {netip.MustParseAddr("192.0.2.2")},
	}
	var fake sync.Mutex // the refreshes look up from goroutines of their own
	lookups := 0
	lookup := func(_ context.Context, _, host string) ([]netip.Addr, error) {
		fake.Lock()
		defer fake.Unlock()
		lookups++
		if a, ok := dns[host]; ok {
			return a, nil
		}
		return nil, errors.New("no such host")
	}
	local := func() []netip.Addr {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.2")}
	}
	for _, c := range []struct {
		defaultHost, entryHost string
		entryPort              int
		refused                bool
	}{
		{"db-main.internal", "pg.internal", 0, true},         // shares 10.0.0.5
		{"db-main.internal", "10.0.0.5", 0, true},            // its address
		{"db-main.internal", "analytics.internal", 0, false}, // another server
		{"db-main.internal", "10.0.0.6", 0, false},
		{"db-main.internal", "pg.internal", 5433, false}, // another port
		{"db-main.internal", "gone.internal", 0, true},   // unresolved: errs towards the same
		{"gone.internal", "analytics.internal", 0, true}, // the default unresolved
		{"127.0.0.1", "me.internal", 0, true},            // this machine by an interface's name
		{"127.0.0.1", "192.0.2.2", 0, true},              // and by its address
		{"/var/run/postgresql", "me.internal", 0, true},  // a unix socket is this machine too
		{"127.0.0.1", "analytics.internal", 0, false},    // another machine
		{"localhost", "/var/run/postgresql", 0, true},    // no lookup needed (sameHost)
	} {
		cfg := config.Default()
		cfg.Backend.Host, cfg.Backend.Port = c.defaultHost, 5432
		cfg.Databases = []config.Database{{Name: "app", BackendDBName: "app_prod", Host: c.entryHost, Port: c.entryPort}}
		markDefaultServer(cfg, &hostResolver{lookup: lookup, local: local})
		_, err := Route(cfg, "alice", nil, Credentials{}, "app_prod")
		var routed *RoutedDatabaseError
		if got := errors.As(err, &routed); got != c.refused {
			t.Errorf("default %s, entry %s:%d: refused %v, want %v (%v)", c.defaultHost, c.entryHost, c.entryPort, got, c.refused, err)
		}
		if _, err := Route(cfg, "alice", nil, Credentials{}, "app"); err != nil {
			t.Errorf("default %s, entry %s: the listed name refused: %v", c.defaultHost, c.entryHost, err)
		}
	}
	// A load looks up a name it has not seen, once however many entries
	// use it; later loads (a users-file change, a revoked password) answer
	// from what they have at once, without waiting for DNS.
	r := &hostResolver{lookup: lookup, local: local}
	lookups = 0
	cfg := config.Default()
	cfg.Backend.Host, cfg.Backend.Port = "db-main.internal", 5432
	cfg.Databases = []config.Database{{Name: "a", Host: "pg.internal"}, {Name: "b", Host: "pg.internal"}, {Name: "c", Host: "analytics.internal"}}
	markDefaultServer(cfg, r)
	if lookups != 3 || !cfg.Databases[0].DefaultServer || cfg.Databases[2].DefaultServer {
		t.Fatalf("%d lookups for three names; marks %+v", lookups, cfg.Databases)
	}
	markDefaultServer(cfg, r)
	if lookups != 3 {
		t.Errorf("a second load looked up again: %d lookups", lookups)
	}
	// The name moves. A load past hostRefreshAfter still answers from what
	// it has, and looks the name up again in the background; the load
	// after that sees the new address.
	fake.Lock()
	dns["pg.internal"] = []netip.Addr{netip.MustParseAddr("10.0.0.8")}
	fake.Unlock()
	r.mu.Lock()
	for _, e := range r.entries {
		e.at = time.Now().Add(-time.Hour)
	}
	r.mu.Unlock()
	markDefaultServer(cfg, r)
	if !cfg.Databases[0].DefaultServer {
		t.Error("the load waited for the lookup")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		fresh := time.Since(r.entries["pg.internal"].at) < time.Minute
		r.mu.Unlock()
		if fresh {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no refresh in the background")
		}
		time.Sleep(time.Millisecond)
	}
	markDefaultServer(cfg, r)
	if cfg.Databases[0].DefaultServer {
		t.Error("the mark outlived the address")
	}
}

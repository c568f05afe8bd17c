package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDurationsTakeDays(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"90d": 90 * 24 * time.Hour, "1d12h": 36 * time.Hour, "10s": 10 * time.Second, "1h30m": 90 * time.Minute, "0s": 0,
	} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "-1s", "5 days", "1.5d", "1d-1h", "99999999d", "100000d2000000h"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if s := FormatDuration(365 * 24 * time.Hour); s != "365d" {
		t.Fatal(s)
	}
}

func TestDefaultsAreTheSpecs(t *testing.T) {
	c, err := Parse("/etc/pgwarden/config.toml", []byte("[[hba]]\nmethod = \"trust\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.PGListen[0] != "127.0.0.1:6432" || c.Server.MaxConnections != 1000 || c.Server.AuthTimeout.Duration != 10*time.Second ||
		c.Backend.Port != 5432 || c.Backend.SSLMode != "prefer" || !c.Backend.Reuse || c.Backend.ResetQuery != "DISCARD ALL" ||
		c.Throttle.FailureDelay.Duration != time.Second || c.Throttle.MaxDelay.Duration != 30*time.Second ||
		c.HTTP.MaxRows != 10000 || c.Tokens.DefaultTTL.Duration != 90*24*time.Hour || c.Log.Format != "json" {
		t.Fatalf("defaults differ from the SPEC: %+v", c)
	}
	if c.Users.File != "/etc/pgwarden/users.toml" {
		t.Fatalf("relative paths resolve against the config's folder: %s", c.Users.File)
	}
	r := c.HBA[0]
	if r.Protocol != "all" || r.SSL != "any" || r.Address[0] != "all" || r.Database[0] != "all" || r.User[0] != "all" || r.Line != 1 {
		t.Fatalf("rule defaults: %+v", r)
	}
	if c.TLS != nil || c.AuthQuery != nil || c.TokensSet {
		t.Fatal("absent sections must stay absent")
	}
}

func TestTheExampleConfigLoads(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "config.toml.example"))
	if err != nil {
		t.Skip("no config.toml.example yet")
	}
	// The example names certificate files that exist only after
	// `pgwarden certs init`; everything else must validate.
	_, err = Parse("/nonexistent/config.toml", data)
	if err != nil {
		for _, e := range err.(Errors) {
			if !strings.Contains(e.Msg, "cannot read") {
				t.Errorf("config.toml.example: %v", e)
			}
		}
	}
}

func TestErrorsAreGatheredWithLinesAndKeys(t *testing.T) {
	_, err := Parse("c.toml", []byte(`
[server]
pg_listen = ["nohost"]
max_connections = 0
proxy_protocol = "maybe"

[backend]
sslmode = "sometimes"

[http]
auth_failure_status = 200

[[jwt_issuers]]
issuer = "https://idp.example.com/"
jwks_url = "http://idp.example.com/keys"

[log]
level = "loud"
`))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		`c.toml:3: server.pg_listen: listener "nohost"`,
		`c.toml:4: server.max_connections: must be at least 1`,
		`c.toml:5: server.proxy_protocol: must be off, optional or required`,
		`c.toml:8: backend.sslmode`,
		`c.toml:11: http.auth_failure_status`,
		`c.toml:15: jwt_issuers[1].jwks_url: "http://idp.example.com/keys": http is allowed on loopback only`,
		`c.toml:18: log.level`,
		`c.toml: hba: there are no HBA rules`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}

func TestStringListTakesOneOrMany(t *testing.T) {
	c, err := Parse("c.toml", []byte("[[hba]]\nuser = \"alice\"\nmethod = \"trust\"\n[[hba]]\nuser = [\"a\", \"b\"]\nmethod = \"trust\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.HBA[0].User) != 1 || len(c.HBA[1].User) != 2 || c.HBA[1].Line != 4 {
		t.Fatalf("%+v", c.HBA)
	}
	if _, err := Parse("c.toml", []byte("[[hba]]\nuser = 5\nmethod = \"trust\"\n")); err == nil {
		t.Fatal("a number as user accepted")
	}
}

// max_backend_connections keeps pgwarden as a whole within it: the
// connections it keeps to the backend server for itself ([auth_query], a
// PostgreSQL store on that server) count, and a limit that leaves none for
// clients is refused at load.
func TestMaxBackendConnectionsCountsPgwardensOwnConnections(t *testing.T) {
	c := Default()
	if n := c.OwnBackendConns(); n != 0 {
		t.Fatalf("no auth_query, no store: %d own connections", n)
	}
	c.AuthQuery = &AuthQuery{Mode: "lookup"}
	if n := c.OwnBackendConns(); n != AuthQueryPoolConns {
		t.Fatalf("auth_query: %d own connections", n)
	}
	c.Store = Store{Kind: "postgres"}
	if n := c.OwnBackendConns(); n != AuthQueryPoolConns+StorePoolConns+1 {
		t.Fatalf("auth_query and a store on the backend server: %d own connections", n)
	}
	c.Store.Host = "store.example.com"
	if n := c.OwnBackendConns(); n != AuthQueryPoolConns {
		t.Fatalf("a store on another server counts against its own server, not this one: %d own connections", n)
	}
	// One server written two ways: before, only the same spelling counted,
	// and a store at 127.0.0.1 beside a backend at localhost took 5
	// connections over the limit.
	c.AuthQuery = nil
	for _, tc := range []struct {
		backend, store string
		port           int
		same           bool
	}{
		{"localhost", "127.0.0.1", 0, true},
		{"/var/run/postgresql", "localhost", 0, true},
		{"::1", "127.0.0.1", 5432, true},
		{"DB.example.com.", "db.example.com", 0, true},
		{"localhost", "127.0.0.1", 5433, false},
		{"10.0.0.5", "127.0.0.1", 0, false},
	} {
		c.Backend.Host, c.Backend.Port = tc.backend, 5432
		c.Store.Host, c.Store.Port = tc.store, tc.port
		want := 0
		if tc.same {
			want = StorePoolConns + storeListenConns
		}
		if n := c.OwnBackendConns(); n != want {
			t.Errorf("backend %s:5432, store %s port %d: %d own connections, want %d", tc.backend, tc.store, tc.port, n, want)
		}
	}
	c.Store.Host = ""
	c.AuthQuery = &AuthQuery{Mode: "lookup"}

	_, err := Parse("c.toml", []byte(`
[backend]
max_backend_connections = 2

[auth_query]
user = "pgwarden"

[[hba]]
method = "trust"
`))
	if err == nil || !strings.Contains(err.Error(), "c.toml:3: backend.max_backend_connections: must be at least 3: it counts the 2 connections pgwarden keeps") {
		t.Fatalf("a limit that leaves no backend for clients: %v", err)
	}
}

// A jwks_url's password is not repeated in the refusal that pgwarden check
// prints and a failed reload logs.
func TestAJWKSURLRefusalHidesItsPassword(t *testing.T) {
	_, err := Parse("c.toml", []byte(`
[[jwt_issuers]]
issuer = "https://idp.example.com/"
jwks_url = "http://keys:url-secret-2@idp.example.com/keys"

[[hba]]
method = "trust"
`))
	if err == nil || !strings.Contains(err.Error(), "http is allowed on loopback only") || strings.Contains(err.Error(), "url-secret-2") {
		t.Fatalf("refusal: %v", err)
	}
}

package httpfront

import (
	"testing"

	"github.com/pgwarden/pgwarden/config"
)

func TestOnlyThisServersHostNamesReachAHandler(t *testing.T) {
	cfg := config.Default()
	cfg.Server.HTTPListen = []string{"127.0.0.1:8432", "db.internal:8433"}
	cfg.HTTP.AllowedHosts = []string{"sql.example.com"}
	for host, want := range map[string]bool{
		"127.0.0.1:8432": true, "127.0.0.1": true, "localhost:8432": true, "LOCALHOST": true, "[::1]:8432": true,
		"db.internal:8433": true, "sql.example.com": true, "SQL.example.com.:443": true, "": true,
		"rebind.evil.example:8432": false, "evil.example": false, "192.0.2.1:8432": false, "localhost.evil.example": false,
		"sql.example.com.evil.example": false,
	} {
		if got := hostAllowed(cfg, host); got != want {
			t.Errorf("Host %q: allowed %v, want %v", host, got, want)
		}
	}
	cfg.Server.HTTPListen = []string{"0.0.0.0:8432"}
	if !hostAllowed(cfg, "192.0.2.1:8432") || hostAllowed(cfg, "evil.example") {
		t.Fatal("a wildcard listener takes any IP Host and no other name")
	}
}

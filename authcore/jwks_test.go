package authcore

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/config"
)

// A key set is fetched when a load first names it, kept for the loads after
// it, and let go (its refreshes ended) once a configuration in force no
// longer names it.
func TestKeySetsAreFetchedOnceAndLetGoWhenNoLongerNamed(t *testing.T) {
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"keys":[]}`))
	}))
	defer srv.Close()
	cfg := config.Default()
	cfg.JWTIssuers = []config.JWTIssuer{{Issuer: "https://idp.test/", JWKSURL: srv.URL, Audience: "pgwarden", Algorithms: []string{"RS256"},
		Refresh: config.Duration{Duration: time.Hour}}}
	users, err := NewUsers(nil)
	if err != nil {
		t.Fatal(err)
	}
	j := NewJWKS(srv.Client())
	for i := 0; i < 3; i++ {
		if _, err := NewTokens(cfg, users, j); err != nil {
			t.Fatal(err)
		}
	}
	if n := fetches.Load(); n != 1 || j.Len() != 1 {
		t.Fatalf("three loads: %d fetches, %d sets kept", n, j.Len())
	}
	j.Keep(cfg)
	if j.Len() != 1 {
		t.Fatal("a set in use was let go")
	}
	// Another refresh interval is another set.
	cfg.JWTIssuers[0].Refresh.Duration = 2 * time.Hour
	if _, err := NewTokens(cfg, users, j); err != nil {
		t.Fatal(err)
	}
	j.Keep(cfg)
	if n := fetches.Load(); n != 2 || j.Len() != 1 {
		t.Fatalf("after the change: %d fetches, %d sets kept", n, j.Len())
	}
	j.Keep(config.Default())
	if j.Len() != 0 {
		t.Fatal("a set no configuration names was kept")
	}
	if _, err := NewTokens(cfg, users, nil); err == nil {
		t.Fatal("issuers without a key set store")
	}
}

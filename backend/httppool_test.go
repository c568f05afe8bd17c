package backend

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/config"
)

// The pool's knowledge of the role settings is read at most once a second
// by one caller at a time, and a read that started earlier never replaces
// one that started later (a connection's login may finish after a newer
// check).
func TestSettingsWatchKeepsTheNewestRead(t *testing.T) {
	var w settingsWatch
	t0 := time.Unix(1000, 0)
	if !w.matches("anything") {
		t.Fatal("nothing known yet: every connection matches")
	}
	if !w.claim(t0) {
		t.Fatal("nothing known: the first caller reads")
	}
	w.learn("a", t0)
	if w.claim(t0.Add(500 * time.Millisecond)) {
		t.Fatal("read half a second ago: not due")
	}
	if !w.claim(t0.Add(settingsCheckEvery)) {
		t.Fatal("a second old: due")
	}
	if w.claim(t0.Add(settingsCheckEvery + time.Millisecond)) {
		t.Fatal("claimed a moment ago: a second caller must not read too")
	}
	w.learn("old", t0.Add(100*time.Millisecond)) // a login that started before the claim
	if !w.matches("a") || w.matches("old") {
		t.Fatal("a read that started before the claimed one replaced it")
	}
	w.learn("b", t0.Add(settingsCheckEvery))
	if w.matches("a") || !w.matches("b") {
		t.Fatal("the claimed read was not kept")
	}
}

func TestKeepsSessionStateFindsEverySpellingOfTheCalls(t *testing.T) {
	for sql, want := range map[string]bool{
		"SELECT dblink_connect('c', 'dbname=x')":                      true,
		"select public.DBLINK_CONNECT_U($1)":                          true,
		`SELECT U&"dblink\005fconnect"('c', 'dbname=x')`:              true,
		"SELECT * FROM dblink('c', 'SELECT 1') AS t(x int)":           false,
		"SELECT dblink_disconnect('c')":                               false,
		"SELECT 1":                                                    false,
		"SELECT dd, dblink_connec":                                    false,
		"dblink_connect":                                              true,
		"SELECT pg_create_physical_replication_slot('s', true, true)": true,
		"SELECT * FROM PG_CREATE_LOGICAL_REPLICATION_SLOT('s', 'test_decoding', temporary => true)": true,
		"SELECT pg_replication_origin_session_setup($1)":                                            true,
		"SELECT replication, slot FROM origin, sess":                                                false,
	} {
		if got := keepsSessionState(sql); got != want {
			t.Errorf("keepsSessionState(%q) = %v, want %v", sql, got, want)
		}
	}
}

// A client names the database, so it could make a pool per request: past
// maxHTTPPools the least recently used idle pools are closed, and a pool
// whose login failed before it held a connection is not kept at all.
func TestHTTPPoolsStayBoundedWhateverDatabasesRequestsName(t *testing.T) {
	cfg := config.Default()
	cfg.Backend.Host, cfg.Backend.Port = "127.0.0.1", 1 // nothing listens: every login fails
	cfg.Backend.ConnectTimeout.Duration = time.Second
	p := NewHTTPPools(zap.NewNop())
	defer p.Close()
	var first *pgxpool.Pool
	for i := 0; i < maxHTTPPools+20; i++ {
		pl, err := p.Get(cfg, Target{Host: cfg.Backend.Host, Port: cfg.Backend.Port, Database: fmt.Sprintf("db%d", i), Role: "r"})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = pl
		}
	}
	if n := p.Pools(); n != maxHTTPPools {
		t.Fatalf("%d pools kept, want %d", n, maxHTTPPools)
	}
	// The first, least recently used, is closed (on a goroutine of its
	// own): acquiring from it then says so, and nothing runs.
	var err error
	for range 100 {
		if _, err = p.Acquire(context.Background(), first, "u"); errors.Is(err, ErrPoolClosed) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("an evicted pool: %v", err)
	}
	pl, _ := p.Get(cfg, Target{Host: cfg.Backend.Host, Port: cfg.Backend.Port, Database: "fails", Role: "r"})
	before := p.Pools()
	if _, err := p.Acquire(context.Background(), pl, "u"); err == nil {
		t.Fatal("a login to a closed port succeeded")
	}
	if n := p.Pools(); n != before-1 {
		t.Fatalf("a pool whose login failed is kept: %d pools, %d before", n, before)
	}
}

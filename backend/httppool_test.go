package backend

import (
	"testing"
	"time"
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

func TestOpensDblinkFindsEverySpellingOfTheCall(t *testing.T) {
	for sql, want := range map[string]bool{
		"SELECT dblink_connect('c', 'dbname=x')":            true,
		"select public.DBLINK_CONNECT_U($1)":                true,
		`SELECT U&"dblink\005fconnect"('c', 'dbname=x')`:    true,
		"SELECT * FROM dblink('c', 'SELECT 1') AS t(x int)": false,
		"SELECT dblink_disconnect('c')":                     false,
		"SELECT 1":                                          false,
		"SELECT dd, dblink_connec":                          false,
		"dblink_connect":                                    true,
	} {
		if got := opensDblink(sql); got != want {
			t.Errorf("opensDblink(%q) = %v, want %v", sql, got, want)
		}
	}
}

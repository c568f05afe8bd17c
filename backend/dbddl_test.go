package backend

import (
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

var ddlCases = []struct {
	sql  string
	want []string
}{
	{"DROP DATABASE foo", []string{"foo"}},
	{"drop database if exists Foo with (force);", []string{"if", "exists", "foo", "with", "force"}},
	{`DROP DATABASE "Mixed""Case"`, []string{`Mixed"Case`}},
	{"CREATE DATABASE b TEMPLATE tpl OWNER x", []string{"b", "template", "tpl", "owner", "x"}},
	{"CREATE DATABASE b WITH TEMPLATE = \"tpl\"", []string{"b", "with", "template", "tpl"}},
	{"ALTER DATABASE a RENAME TO b", []string{"a", "rename", "to", "b"}},
	{"drop /* a comment /* nested */ still */ database x", []string{"x"}},
	{"drop -- a comment\ndatabase x", []string{"x"}},
	{"DROP\tDATABASE\nx", []string{"x"}},
	// Only the database statement's names, not the next statement's.
	{"SELECT 1; DROP DATABASE x; SELECT y", []string{"x"}},
	{"DROP DATABASE x; DROP DATABASE y", []string{"x", "y"}},
	// String literals are skipped.
	{"DROP DATABASE x WITH ('it''s', FORCE)", []string{"x", "with", "force"}},
	// A Parse body: statement name, NUL, the SQL, NUL, parameter OIDs.
	{"stmt1\x00DROP DATABASE x\x00\x00\x01\x00\x00\x00\x22", []string{"x"}},
	// Longer names are clipped to 63 bytes, as PostgreSQL clips them,
	// at a character boundary.
	{"DROP DATABASE " + strings.Repeat("a", 70), []string{strings.Repeat("a", 63)}},
	{"DROP DATABASE " + strings.Repeat("a", 62) + "é", []string{strings.Repeat("a", 62)}},
	// Not database statements.
	{"SELECT current_database()", nil},
	{"SELECT 'drop database x'", nil},
	{"SELECT 1 -- drop database x", nil},
	{`SELECT "drop" database`, nil},
	{"DROP TABLE database_x", nil},
	{"CREATE TABLE t (database text)", nil},
	{"drop_database x", nil},
	{"", nil},
}

// The detector reads database statements as PostgreSQL's lexer would, and
// gives the same answer however the text is cut into pieces.
func TestDatabaseDDLDetector(t *testing.T) {
	for _, tc := range ddlCases {
		if got := DatabasesNamedByDDL(tc.sql); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.sql, got, tc.want)
		}
		var d DatabaseDDLDetector
		d.Start()
		for i := 0; i < len(tc.sql); i++ {
			d.Feed([]byte{tc.sql[i]})
		}
		if got := d.End(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q byte by byte: %q, want %q", tc.sql, got, tc.want)
		}
	}
	// Start forgets the last message.
	var d DatabaseDDLDetector
	d.Start()
	d.Feed([]byte("DROP DATABASE x"))
	d.End()
	d.Start()
	d.Feed([]byte("SELECT 1"))
	if got := d.End(); got != nil {
		t.Fatalf("after Start: %q", got)
	}
	// However long the statement, at most maxDDLNames names.
	if got := DatabasesNamedByDDL("DROP DATABASE" + strings.Repeat(" x", 1000)); len(got) != maxDDLNames {
		t.Fatalf("%d names", len(got))
	}
}

// ReleaseDatabases closes the parked backends of the named databases on
// that server only, and for ReleaseWindow closes those that come back
// instead of parking them.
func TestReleaseDatabasesClosesOnlyThoseDatabasesIdleBackends(t *testing.T) {
	p := NewPool()
	l := PoolLimits{PerKey: 5, Max: 10, IdleTimeout: time.Minute}
	now := time.Now()
	park := func(k Key) net.Conn {
		t.Helper()
		if err := p.Reserve(l); err != nil {
			t.Fatal(err)
		}
		c1, c2 := net.Pipe()
		t.Cleanup(func() { c2.Close() })
		p.Put(&Session{Conn: c1, Key: k, Created: now}, l, now)
		return c2
	}
	dropped := Key{Host: "h", Port: 1, Role: "r", Database: "gone"}
	otherDB := Key{Host: "h", Port: 1, Role: "r", Database: "kept"}
	otherServer := Key{Host: "h", Port: 2, Role: "r", Database: "gone"}
	park(dropped)
	park(otherDB)
	park(otherServer)

	p.ReleaseDatabases("h", 1, []string{"if", "exists", "gone"}, now)
	st := p.Stats()
	if st.Parked != 2 || st.ParkedByKey[dropped] != 0 || st.ParkedByKey[otherDB] != 1 || st.ParkedByKey[otherServer] != 1 {
		t.Fatalf("after the release: %+v", st)
	}
	if st.InUse != 0 {
		t.Fatalf("closed backends still counted: %+v", st)
	}
	// One whose reset was in flight comes back within the window: closed.
	park(dropped)
	if n := p.Stats().ParkedByKey[dropped]; n != 0 {
		t.Fatalf("a backend of a released database was parked within the window")
	}
	if st := p.Stats(); st.InUse != 0 {
		t.Fatalf("the closed backend is still counted: %+v", st)
	}
	// After the window, parked again; the janitor forgets the release.
	later := now.Add(ReleaseWindow + time.Second)
	p.expire(l, later)
	if err := p.Reserve(l); err != nil {
		t.Fatal(err)
	}
	c1, c2 := net.Pipe()
	defer c2.Close()
	p.Put(&Session{Conn: c1, Key: dropped, Created: later}, l, later)
	if n := p.Stats().ParkedByKey[dropped]; n != 1 {
		t.Fatalf("after the window: %d parked", n)
	}
	if len(p.released) != 0 {
		t.Fatalf("the janitor kept %d releases", len(p.released))
	}
}

// However many names clients send, the release windows kept are bounded,
// and a window still matches its database by one lookup.
func TestReleaseWindowsAreBounded(t *testing.T) {
	p := NewPool()
	now := time.Now()
	for i := range 5000 {
		p.ReleaseDatabases("h", 1, []string{"db" + strings.Repeat("x", i%50) + string(rune('a'+i%26)) + time.Duration(i).String()}, now)
	}
	if len(p.released) > maxReleased {
		t.Fatalf("%d release windows kept", len(p.released))
	}
	p2 := NewPool()
	long := strings.Repeat("d", 70)
	p2.ReleaseDatabases("h", 1, DatabasesNamedByDDL("DROP DATABASE "+long), now)
	if !p2.releasedLocked(Key{Host: "h", Port: 1, Database: long}, now) {
		t.Fatal("a database named by its clipped name is not within its window")
	}
	if p2.releasedLocked(Key{Host: "h", Port: 2, Database: long}, now) {
		t.Fatal("another server's database is within the window")
	}
}

package hba

import (
	"net/netip"
	"testing"
)

// A regular expression's "." takes a newline, as PostgreSQL's does (it
// compiles without REG_NEWLINE): a name can hold one, and a reject rule
// written "/^.*helpdesk$" must stop "x\nhelpdesk" as PostgreSQL's would.
// RE2's "." stopped at the newline, so the name passed on to the rules
// below.
func TestARegexDotTakesANewlineAsPostgreSQLs(t *testing.T) {
	rs, err := ParseFile("pg_hba.conf", []byte("host all /^.*helpdesk$ all reject\nhost /^db.$ all all reject\nhost all all all trust\n"), Env{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, db string
		rule     int
	}{
		{"helpdesk", "app", 1},
		{"x\nhelpdesk", "app", 1},
		{"x\nhelpdesk\n", "app", 3}, // "$" is the end of the name, as in PostgreSQL
		{"alice", "db\n", 2},
		{"alice", "db\n\n", 3},
	} {
		m := rs.Match(&Request{Protocol: ProtoPG, Addr: netip.MustParseAddr("192.0.2.1"), User: c.user, Database: c.db})
		if m == nil || m.Number != c.rule {
			t.Errorf("user %q database %q: matched %v, want rule %d", c.user, c.db, m, c.rule)
		}
	}
}

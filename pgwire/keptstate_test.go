package pgwire

import (
	"strings"
	"testing"
)

func TestKeptStateDetectorFindsWhatLeavesStateBehind(t *testing.T) {
	cases := []struct {
		sql  string
		want bool
	}{
		{"SET myapp.tenant = 'A'", true},
		{"set   myapp.tenant to 'A'", true},
		{"SET SESSION myapp.tenant = 'A'", true},
		{"SET LOCAL app.user_id = 7", true},
		{"BEGIN; SET LOCAL \"app\".\"x\" = 1; COMMIT", true},
		{"SET\n\tmyapp.tenant='A'", true},
		{"SELECT set_config('myapp.tenant', 'A', false)", true},
		{"select pg_catalog.SET_CONFIG($1, $2, true)", true},
		{"SELECT 1", false},
		{"SET search_path = myschema, public", false},
		{"SET work_mem = '64MB'", false},
		{"UPDATE t SET a = b.c FROM b WHERE t.id = b.id", false},
		{"SELECT current_setting('myapp.tenant', true)", false},
		// RESET of an unknown dotted name makes the placeholder too.
		{"RESET myapp.tenant", true},
		{"reset\n\"myapp\".\"tenant\"", true},
		{"SELECT offset_x.y FROM offset_x", false},
		// Ways around a scan that read only the token after SET, each
		// accepted by PostgreSQL 15 (found by trying them through pgwarden).
		{"SET myapp . tenant = 'A'", true},
		{"SET /* c */ myapp.tenant = 'A'", true},
		{"SET -- c\n myapp.tenant = 'A'", true},
		{"SET/**/myapp.tenant='A'", true},
		{"SET\"myapp.tenant\"='A'", true},
		{"SET \"my=app\".tenant = 'A'", true},
		{"SET \"myapp.tenant\" = 'A'", true},
		{"SET \"my\"\"app\".tenant = 'A'", true},
		{"SET U&\"myapp!002etenant\" UESCAPE '!' = 'A'", true},
		{"SELECT U&\"set\\005fconfig\"('myapp.tenant', 'A', false)", true},
		{"SET SESSION myapp . tenant TO 'A'", true},
		// A SET that is only text still counts: finding costs reuse only.
		{"SELECT 'SET \"'; SET myapp.tenant = 1; --\"", true},
		// What ends the scan: a value, a string, a parenthesis, a new
		// statement.
		{"SET search_path TO a.b", false},
		{"SET search_path = a.b", false},
		{"SET TIME ZONE 'Europe/x.y'", false},
		{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SELECT a.b FROM a", false},
		{"INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = excluded.v", false},
		{"UPDATE t SET (a, b) = (s.a, s.b) FROM s", false},
		{"ALTER TABLE t ALTER c SET DEFAULT nextval('s.q')", false},
		{"SELECT x->>'set' FROM t, u.v", false},
		{"SELECT t.set, u.v FROM t, u", false},
		{"RESET ALL", false},
		// dblink keeps its connections open past any reset.
		{"SELECT dblink_connect('c', 'dbname=x')", true},
		{"select public.DBLINK_CONNECT_U('dbname=x')", true},
		{"SELECT * FROM dblink('c', 'SELECT 1') AS t(x int)", false},
		{"SELECT dblink_disconnect('c')", false},
		{"SELECT dd_blink_connect()", false},
		// A temporary replication slot lives as long as the session; a
		// session replication origin tags every later change.
		{"SELECT pg_create_physical_replication_slot('s', true, true)", true},
		{"SELECT * FROM pg_create_logical_replication_slot('s', 'test_decoding', temporary => true)", true},
		{"select PG_COPY_LOGICAL_REPLICATION_SLOT('a', 'b', true)", true},
		{"SELECT pg_replication_origin_session_setup('o')", true},
		{"SELECT rreplication_slot()", true},
		{"SELECT ooriginn_sess", false},
		{"SELECT replication, slot FROM origin, sess", false},
	}
	for _, c := range cases {
		// Whatever the split, the verdict is the same.
		for split := 0; split <= len(c.sql); split++ {
			var d keptStateDetector
			d.start()
			d.feed([]byte(c.sql[:split]))
			d.feed([]byte(c.sql[split:]))
			d.start() // the message ends
			if d.found != c.want {
				t.Fatalf("%q split at %d: found %v, want %v", c.sql, split, d.found, c.want)
			}
		}
	}
}

func TestKeptStateDetectorDoesNotJoinMessages(t *testing.T) {
	var d keptStateDetector
	d.start()
	d.feed([]byte("SELECT 'x' AS set"))
	d.start()
	d.feed([]byte("myapp.x"))
	d.start()
	if d.found {
		t.Fatal("a SET at the end of one message joined a name in the next")
	}
}

// The matcher restarts a failed match at the byte that broke it only when
// that byte is the name's first letter, which is right only if the first
// letter occurs nowhere else in the name.
func TestKeptStateCallsRestartAtTheirFirstLetter(t *testing.T) {
	for _, name := range keptStateCalls {
		if name != strings.ToLower(name) {
			t.Errorf("%q: the scan lower-cases what it reads, so a name must be lower case", name)
		}
		if strings.IndexByte(name[1:], name[0]) >= 0 {
			t.Errorf("%q holds its first letter again: a mismatch there would miss an overlapping match", name)
		}
	}
}

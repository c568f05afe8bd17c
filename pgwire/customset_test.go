package pgwire

import "testing"

func TestCustomSettingDetectorFindsWhatCreatesAPlaceholder(t *testing.T) {
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
		{"RESET myapp.tenant", false},
		{"SELECT offset_x.y FROM offset_x", false},
	}
	for _, c := range cases {
		// Whatever the split, the verdict is the same.
		for split := 0; split <= len(c.sql); split++ {
			var d customSettingDetector
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

func TestCustomSettingDetectorDoesNotJoinMessages(t *testing.T) {
	var d customSettingDetector
	d.start()
	d.feed([]byte("SELECT 'x' AS set"))
	d.start()
	d.feed([]byte("myapp.x"))
	d.start()
	if d.found {
		t.Fatal("a SET at the end of one message joined a name in the next")
	}
}

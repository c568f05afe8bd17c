package admin

import (
	"strings"
	"testing"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/snapshot"
)

// snapEnv serves a snapshot with no users; user changes fail.
type snapEnv struct {
	fakeEnv
	snap *snapshot.Snapshot
}

func (e snapEnv) Snapshot() *snapshot.Snapshot { return e.snap }

// FuzzAdminCommand: any command line an admin sends is answered or
// refused, never a panic; the log's verb is one of the command words or
// "?", so nothing else typed at the prompt (a pasted password) reaches the
// log; and a refusal is an *Error with a SQLSTATE.
func FuzzAdminCommand(f *testing.F) {
	for _, s := range []string{"SHOW USERS", "show hba;", "CREATE USER \"Mixed\" WITH PASSWORD 'it''s' ADMIN", "ALTER USER a PASSWORD 'SCRAM-SHA-256$4096:AAAA$BBBB:CCCC'",
		"DROP USER 'x'", "CREATE TOKEN a EXPIRE '3 months'", "KILL 18446744073709551616", "RELOAD", "hunter2", "'", "\"", "SHOW", "SHOW password_encryption", "CREATE USER"} {
		f.Add(s)
	}
	users, err := authcore.NewUsers(nil)
	if err != nil {
		f.Fatal(err)
	}
	env := snapEnv{snap: &snapshot.Snapshot{Config: config.Default(), Users: users}}
	verbs := map[string]bool{"?": true}
	for first, seconds := range commandWords {
		verbs[first] = true
		for _, w := range seconds {
			verbs[first+" "+w] = true
		}
	}
	f.Fuzz(func(t *testing.T, q string) {
		if v := Verb(q); !verbs[v] {
			t.Fatalf("Verb(%q) = %q, not a command word", q, v)
		}
		err := Run(strings.TrimSpace(q), env, discard{})
		if err != nil {
			if _, ok := err.(*Error); !ok && !strings.Contains(err.Error(), "not here") {
				t.Fatalf("%q: an error without a SQLSTATE: %v", q, err)
			}
		}
	})
}

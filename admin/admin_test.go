package admin

import (
	"errors"
	"strings"
	"testing"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/metrics"
	"github.com/pgwarden/pgwarden/snapshot"
)

// fakeEnv serves commands that fail before they touch the server.
type fakeEnv struct{}

func (fakeEnv) Snapshot() *snapshot.Snapshot { return nil }
func (fakeEnv) UpdateUsers(func([]*authcore.User) ([]*authcore.User, error)) error {
	return errors.New("not here")
}
func (fakeEnv) Reload() error             { return nil }
func (fakeEnv) Clients() [][]string       { return nil }
func (fakeEnv) Kill(uint64) bool          { return false }
func (fakeEnv) EndSessionsOf(string)      {}
func (fakeEnv) Samples() []metrics.Sample { return nil }
func (fakeEnv) Pools() backend.Stats      { return backend.Stats{} }
func (fakeEnv) Version() string           { return "test" }
func (fakeEnv) PeerReachable(string) bool { return false }

func TestTheCommandLanguageSplitsWordsIdentifiersAndStrings(t *testing.T) {
	toks, err := tokenize(`CREATE USER "Mixed Case" WITH PASSWORD 'it''s a secret' ADMIN`)
	if err != nil {
		t.Fatal(err)
	}
	want := []token{{text: "CREATE"}, {text: "USER"}, {text: "Mixed Case", quoted: true}, {text: "WITH"}, {text: "PASSWORD"},
		{text: "it's a secret", str: true}, {text: "ADMIN"}}
	if len(toks) != len(want) {
		t.Fatalf("%+v", toks)
	}
	for i := range want {
		if toks[i] != want[i] {
			t.Fatalf("token %d: %+v, want %+v", i, toks[i], want[i])
		}
	}
	if v := Verb(`ALTER USER alice PASSWORD 'secret'`); v != "ALTER USER" {
		t.Fatalf("the verb for the log is %q (it must never carry the password)", v)
	}
	if _, err := tokenize(`ALTER USER alice PASSWORD 'unterminated`); err == nil {
		t.Fatal("an unterminated string was accepted")
	}
}

func TestUnknownCommandsAndBadUsageAre42601(t *testing.T) {
	// Keywords fold ASCII case only, as PostgreSQL's do: PAſSWORD (a
	// long s) is no keyword.
	for _, q := range []string{"FROB", "DROP USER", "KILL", "CREATE TOKEN a EXPIRE", "ALTER USER a PASSWORD b", "SHOW", "ALTER USER a PAſSWORD 'b'"} {
		err := Run(q, fakeEnv{}, nil)
		var e *Error
		if !errors.As(err, &e) || e.Code != "42601" {
			t.Errorf("%q: %v", q, err)
		}
	}
}

func TestIntervalsReadAsPeopleWriteThem(t *testing.T) {
	for _, s := range []string{"3 months", "90 days", "12h", "1 year", "2 weeks"} {
		if d, err := parseInterval(s); err != nil || d <= 0 {
			t.Errorf("%q: %v %v", s, d, err)
		}
	}
	for _, s := range []string{"", "three months", "3 fortnights", "-1 days", "1 2 3", "300 years", "9223372036854775807 seconds", "0s", "0d"} {
		if _, err := parseInterval(s); err == nil {
			t.Errorf("%q was accepted", s)
		}
	}
}

// usersEnv keeps a users list that UpdateUsers changes.
type usersEnv struct {
	fakeEnv
	users []*authcore.User
	ended []string
}

func (e *usersEnv) UpdateUsers(change func([]*authcore.User) ([]*authcore.User, error)) error {
	next, err := change(e.users)
	if err == nil {
		e.users = next
	}
	return err
}

func (e *usersEnv) EndSessionsOf(name string) { e.ended = append(e.ended, name) }

// discard is an Output that keeps nothing.
type discard struct{}

func (discard) Rows(string, []string, [][]string) {}
func (discard) Done(string)                       {}

func (e *usersEnv) names() []string {
	var out []string
	for _, u := range e.users {
		out = append(out, u.Name)
	}
	return out
}

// User names read as PostgreSQL reads identifiers: bare words fold to
// lower case, "quoted" ones are exact, and a 'string' is no name.
func TestUserNamesAreIdentifiersAsInPostgreSQL(t *testing.T) {
	env := &usersEnv{users: []*authcore.User{{Name: "bob"}, {Name: "Bob"}, {Name: "carol"}}}
	if err := Run(`DROP USER BOB`, env, discard{}); err != nil {
		t.Fatal(err)
	}
	if got := env.names(); len(got) != 2 || got[0] != "Bob" || got[1] != "carol" {
		t.Fatalf("DROP USER BOB dropped the wrong user: %v", got)
	}
	if err := Run(`DROP USER "Bob"`, env, discard{}); err != nil {
		t.Fatal(err)
	}
	if got := env.names(); len(got) != 1 || got[0] != "carol" {
		t.Fatalf(`DROP USER "Bob": %v`, got)
	}
	var e *Error
	if err := Run(`DROP USER 'carol'`, env, discard{}); !errors.As(err, &e) || e.Code != "42601" || len(env.users) != 1 {
		t.Fatalf("DROP USER 'carol': %v, %v", err, env.names())
	}
	if err := Run(`DROP USER "CAROL"`, env, discard{}); !errors.As(err, &e) || e.Code != "42704" {
		t.Fatalf(`DROP USER "CAROL": %v`, err)
	}
	if len(env.ended) != 2 || env.ended[0] != "bob" || env.ended[1] != "Bob" {
		t.Fatalf("sessions ended: %v", env.ended)
	}
}

// "" names no one, as in PostgreSQL (42601); it used to answer "internal
// error" from the users file's own check.
func TestAnEmptyQuotedNameIsASyntaxError(t *testing.T) {
	env := &usersEnv{users: []*authcore.User{{Name: "bob"}}}
	for _, q := range []string{`CREATE USER "" PASSWORD 'longpassword1'`, `DROP USER ""`, `ALTER USER "" PASSWORD 'longpassword1'`, `CREATE TOKEN ""`} {
		var e *Error
		if err := Run(q, env, discard{}); !errors.As(err, &e) || e.Code != "42601" || len(env.users) != 1 {
			t.Fatalf("%s: %v, %v", q, err, env.names())
		}
	}
}

// A name with a control character is refused (42602) before anything is
// written: it would make log lines and psql tables lie.
func TestCreateUserRefusesControlCharacters(t *testing.T) {
	env := &usersEnv{}
	var e *Error
	if err := Run("CREATE USER \"alice\nSHOW\"", env, discard{}); !errors.As(err, &e) || e.Code != "42602" || len(env.users) != 0 {
		t.Fatalf("a newline in the name: %v, %v", err, env.names())
	}
}

// SHOW CONFIG masks every secret: keys named password or secret, and the
// password of a URL (a jwks_url behind basic authentication).
func TestShowConfigMasksPasswordsInURLsToo(t *testing.T) {
	c := config.Default()
	c.Backend.Password = "backend-secret-1"
	c.JWTIssuers = []config.JWTIssuer{{Issuer: "https://idp.example.com/", JWKSURL: "https://keys:url-secret-2@idp.example.com/jwks"}}
	rows, err := configRows(c)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, r := range rows {
		found[r[0]] = r[1]
		for _, secret := range []string{"backend-secret-1", "url-secret-2"} {
			if strings.Contains(r[1], secret) {
				t.Errorf("%s shows a secret: %s", r[0], r[1])
			}
		}
	}
	if got := found["jwt_issuers[1].jwks_url"]; got != "https://keys:xxxxx@idp.example.com/jwks" {
		t.Errorf("jwks_url shows as %q", got)
	}
	if got := found["backend.password"]; got != "********" {
		t.Errorf("backend.password shows as %q", got)
	}
}

// CREATE USER ... SECRET takes only a secret that can sign tokens.
func TestCreateUserRefusesASecretThatCannotSign(t *testing.T) {
	env := &usersEnv{}
	var e *Error
	if err := Run("CREATE USER alice SECRET 'short'", env, discard{}); !errors.As(err, &e) || e.Code != "22023" || len(env.users) != 0 {
		t.Fatalf("a short secret: %v, %v", err, env.names())
	}
	if err := Run("CREATE USER alice SECRET '"+authcore.NewSecret()+"'", env, discard{}); err != nil || len(env.users) != 1 {
		t.Fatalf("a secret of 32 bytes: %v, %v", err, env.names())
	}
}

func TestCommentsAreSpacesAndAQueryHoldsOneCommand(t *testing.T) {
	// What drivers and scripts send: pgx's Ping is "-- ping", which
	// PostgreSQL answers with an empty result, as does a lone ;.
	for _, q := range []string{"", " ", ";", ";;", "-- ping", "/* a /* nested */ comment */", "-- one\n-- two\n;"} {
		if !Empty(q) {
			t.Errorf("%q holds no command, yet is not empty", q)
		}
	}
	for _, q := range []string{"SHOW USERS", "/*", "'", "SHOW USERS; SHOW HBA"} {
		if Empty(q) {
			t.Errorf("%q is taken for an empty query", q)
		}
	}
	for q, want := range map[string]string{
		"/* who */ SHOW USERS":                       "SHOW USERS",
		"SHOW/**/USERS;":                             "SHOW USERS",
		"SHOW USERS -- all of them":                  "SHOW USERS",
		"; SHOW USERS ;; -- done":                    "SHOW USERS",
		"ALTER USER alice-- a comment\nPASSWORD 'x'": "ALTER USER",
		"-- CREATE USER x\nRELOAD":                   "RELOAD",
	} {
		if v := Verb(q); v != want {
			t.Errorf("%q: the command is %q, want %q", q, v, want)
		}
	}
	// Comment marks inside strings and identifiers are text.
	toks, err := tokenize(`ALTER USER "a--b" PASSWORD '/* not -- a comment */;'`)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 5 || toks[2].text != "a--b" || toks[4].text != "/* not -- a comment */;" {
		t.Fatalf("%+v", toks)
	}
	for q, code := range map[string]string{
		"SHOW USERS; DROP USER alice": "0A000",
		"SHOW USERS /* unterminated":  "42601",
	} {
		var e *Error
		if err := Run(q, fakeEnv{}, nil); !errors.As(err, &e) || e.Code != code {
			t.Errorf("%q: %v, want %s", q, err, code)
		}
	}
}

func TestTheSettingsDriversSendOnConnectAreTakenAndChangeNothing(t *testing.T) {
	for _, q := range []string{
		"SET extra_float_digits = 3", "SET application_name = 'PostgreSQL JDBC Driver'", "set SESSION extra_float_digits TO 3",
		"SET extra_float_digits=3", "SET extra_float_digits =3", "SET extra_float_digits= 3", `SET "application_name" TO ''`,
		"SET client_encoding = 'UTF8'", "SET client_encoding TO unicode",
	} {
		out := &recordingOutput{}
		if err := Run(q, fakeEnv{}, out); err != nil || out.done != "SET" {
			t.Errorf("%q: %v, answered %q", q, err, out.done)
		}
	}
	for q, code := range map[string]string{
		"SET log.level = debug":          "0A000",
		"SET client_encoding = 'LATIN1'": "0A000",
		"SET search_path = x":            "0A000",
		"SET":                            "42601",
		"SET extra_float_digits":         "42601",
		"SET extra_float_digits = 1 2":   "42601",
		"SET 'x' = 1":                    "42601",
	} {
		var e *Error
		if err := Run(q, fakeEnv{}, &recordingOutput{}); !errors.As(err, &e) || e.Code != code {
			t.Errorf("%q: %v, want %s", q, err, code)
		}
	}
	if v := Verb("SET application_name = 'x'"); v != "SET" {
		t.Errorf("verb %q", v)
	}
}

type recordingOutput struct{ done string }

func (o *recordingOutput) Rows(string, []string, [][]string) {}
func (o *recordingOutput) Done(tag string)                   { o.done = tag }

func TestShowTakesNothingAfterItsName(t *testing.T) {
	for _, q := range []string{"SHOW USERS WHERE name = 'x'", "show clients 5", "SHOW VERSION please"} {
		var e *Error
		if err := Run(q, fakeEnv{}, &recordingOutput{}); !errors.As(err, &e) || e.Code != "42601" || !strings.Contains(e.Msg, "takes nothing after it") {
			t.Errorf("%q: %v", q, err)
		}
	}
}

package integration

import (
	"context"
	"fmt"
	"os/user"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

const passwordRules = `
[[hba]]
address = "local"
method = "trust"

[[hba]]
method = "password"
`

func TestTrustOnTheUnixSocketLetsPsqlIn(t *testing.T) {
	g := startGateway(t, passwordRules, nil)
	out, err := psql(t, fmt.Sprintf("host=%s port=%d user=alice dbname=postgres", g.sockDir, g.port), "SELECT current_user")
	if err != nil || out != "alice" {
		t.Fatalf("psql over the unix socket: %v: %s", err, out)
	}
	g.waitLog(`"method":"trust"`, 1)
}

func TestPasswordOverTCPWithPgxAndPsql(t *testing.T) {
	users := []testUser{
		{name: "alice", password: "alice-Pass-1"},
		{name: "bob", password: "bob-Bcrypt-2", algo: "bcrypt"},
		{name: "carol", password: "carol-Argon-3", algo: "argon2id"},
		{name: "dave", password: "dave-Pbkdf2-4", algo: "pbkdf2-sha512"},
	}
	g := startGateway(t, passwordRules, users)
	for _, u := range users {
		c := g.mustConnect(u.name, u.password, "postgres")
		if got := queryOne(t, c, "SELECT current_user"); got != u.name {
			t.Fatalf("%s (%s): current_user = %q", u.name, u.algo, got)
		}
	}
	out, err := psql(t, g.connString("alice", "alice-Pass-1", "postgres"), "SELECT 40 + 2")
	if err != nil || out != "42" {
		t.Fatalf("psql with a password: %v: %s", err, out)
	}
}

func TestEveryPasswordFailureLooksTheSame(t *testing.T) {
	users := []testUser{
		{name: "alice", password: "alice-Pass-1"},
		{name: "bob", password: "bob-Pass-2", extra: "valid_until = 2020-01-01T00:00:00Z\n"},
		{name: "carol", password: "carol-Pass-3", extra: "disabled = true\n"},
	}
	g := startGateway(t, passwordRules, users)
	cases := []struct{ name, user, password string }{
		{"wrong password", "alice", "not-her-password"},
		{"unknown user", "mallory", "whatever-pass"},
		{"expired user", "bob", "bob-Pass-2"},
		{"disabled user", "carol", "carol-Pass-3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := g.connect(tc.user, tc.password, "postgres")
			wantPgError(t, err, "28P01", fmt.Sprintf("password authentication failed for user %q", tc.user))
		})
	}
	t.Run("empty password", func(t *testing.T) {
		r := dialRaw(t, g.addr())
		r.write(startupBytes(3, 0, "user", "alice", "database", "postgres"))
		if _, ok := r.receive().(*pgproto3.AuthenticationCleartextPassword); !ok {
			t.Fatal("want AuthenticationCleartextPassword")
		}
		r.send(&pgproto3.PasswordMessage{Password: ""})
		r.expectError("28P01", `password authentication failed for user "alice"`)
	})
	// The true reasons are in the audit log, not in what clients saw.
	for _, reason := range []string{"wrong password", "unknown user", "user expired", "user disabled", "empty password"} {
		g.waitLog(reason, 1)
	}
}

func TestRejectAndNoMatchingRule(t *testing.T) {
	g := startGateway(t, `
[[hba]]
user = "eve"
method = "reject"

[[hba]]
database = "postgres"
user = "alice"
method = "trust"
`, nil)
	_, err := g.connect("eve", "", "postgres")
	wantPgError(t, err, "28000", `HBA rejects connection for host "127.0.0.1", user "eve", database "postgres", SSL off`)
	_, err = g.connect("bob", "", "postgres")
	wantPgError(t, err, "28000", `no HBA rule for host "127.0.0.1", user "bob", database "postgres", SSL off`)
	_, err = g.connect("alice", "", "app_prod")
	wantPgError(t, err, "28000", `no HBA rule for host "127.0.0.1", user "alice", database "app_prod", SSL off`)
	g.mustConnect("alice", "", "postgres")
}

func TestFirstMatchWinsWithoutFallThrough(t *testing.T) {
	g := startGateway(t, `
[[hba]]
user = "alice"
method = "password"

[[hba]]
method = "trust"
`, []testUser{{name: "alice", password: "alice-Pass-1"}})
	// A failed password under rule 1 is final: rule 2 would have trusted her.
	_, err := g.connect("alice", "wrong-password", "postgres")
	wantPgError(t, err, "28P01", `password authentication failed for user "alice"`)
	g.mustConnect("bob", "", "postgres")
}

func TestRoleAndRegexRules(t *testing.T) {
	g := startGateway(t, `
[[hba]]
user = ["+ops"]
method = "trust"

[[hba]]
user = "/^svc_"
method = "trust"

[[hba]]
method = "reject"
`, []testUser{{name: "ops1", extra: `roles = ["ops"]` + "\n"}, {name: "alice"}})
	g.mustConnect("ops1", "", "postgres")
	g.mustConnect("svc_reports", "", "postgres")
	g.mustConnect("svc_etl", "", "postgres")
	_, err := g.connect("alice", "", "postgres")
	wantPgError(t, err, "28000", `HBA rejects connection for host "127.0.0.1", user "alice", database "postgres", SSL off`)
}

func TestDatabaseRoutingAndRoleMapping(t *testing.T) {
	g := startGateway(t, passwordRules+`
[[databases]]
name = "app"
backend_dbname = "app_prod"
`, []testUser{
		{name: "bob", password: "bob-Pass-2", extra: `backend_user = "app_rw"` + "\n"},
		{name: "alice", password: "alice-Pass-1"},
	})
	c := g.mustConnect("bob", "bob-Pass-2", "app")
	if got := queryOne(t, c, "SELECT current_user || '@' || current_database()"); got != "app_rw@app_prod" {
		t.Fatalf("routed session is %q", got)
	}
	// A missing database is the backend's 3D000, and only after a
	// successful authentication: a wrong password still says 28P01.
	_, err := g.connect("alice", "wrong-password", "nosuchdb")
	wantPgError(t, err, "28P01", `password authentication failed for user "alice"`)
	_, err = g.connect("alice", "alice-Pass-1", "nosuchdb")
	wantPgError(t, err, "3D000", `database "nosuchdb" does not exist`)
}

func TestBackendPasswordPerUserAndPassthrough(t *testing.T) {
	if err := pg.Exec("ALTER ROLE dave PASSWORD 'dave-Own-Backend-9'"); err != nil {
		t.Fatal(err)
	}
	defer pg.Exec(fmt.Sprintf("ALTER ROLE dave PASSWORD '%s'", backendPassword))
	noteSecret("dave-Own-Backend-9")
	g := startGateway(t, passwordRules, []testUser{
		{name: "dave", password: "dave-Front-1", extra: `backend_password = "dave-Own-Backend-9"` + "\n"},
		{name: "carol", password: "carol-Front-3"},
	})
	c := g.mustConnect("dave", "dave-Front-1", "postgres")
	if got := queryOne(t, c, "SELECT current_user"); got != "dave" {
		t.Fatalf("current_user = %q", got)
	}
	// carol has no backend_password: the shared [backend] password works.
	g.mustConnect("carol", "carol-Front-3", "postgres")
}

func TestNegotiateProtocolVersionAndUnsupportedMajor(t *testing.T) {
	g := startGateway(t, passwordRules, nil)
	r := dialRaw(t, g.sockDir+fmt.Sprintf("/.s.PGSQL.%d", g.port))
	r.write(startupBytes(3, 5, "user", "alice", "database", "postgres", "_pq_.magic", "1"))
	npv, ok := r.receive().(*pgproto3.NegotiateProtocolVersion)
	if !ok || npv.NewestMinorProtocol != 0 || len(npv.UnrecognizedOptions) != 1 || npv.UnrecognizedOptions[0] != "_pq_.magic" {
		t.Fatalf("want NegotiateProtocolVersion 3.0 [_pq_.magic], got %#v", npv)
	}
	if _, ok := r.receive().(*pgproto3.AuthenticationOk); !ok {
		t.Fatal("want AuthenticationOk after negotiation")
	}

	r2 := dialRaw(t, g.addr())
	r2.write(startupBytes(4, 0, "user", "alice"))
	r2.expectError("0A000", "unsupported frontend protocol")
}

// AuthenticationOk waits to go out with the session's first messages (one
// write instead of two), yet a refusal after authentication still follows
// it: the client hears that it was authenticated, then why the session
// ends, as from PostgreSQL.
func TestARefusalAfterAuthenticationStillFollowsAuthenticationOk(t *testing.T) {
	g := startGateway(t, passwordRules, nil)
	sock := g.sockDir + fmt.Sprintf("/.s.PGSQL.%d", g.port)
	r := dialRaw(t, sock)
	r.write(startupBytes(3, 0, "user", "alice", "database", "no_such_database"))
	if m, ok := r.receive().(*pgproto3.AuthenticationOk); !ok {
		t.Fatalf("want AuthenticationOk before the backend's refusal, got %#v", m)
	}
	r.expectError("3D000", `database "no_such_database" does not exist`)

	ok := dialRaw(t, sock)
	ok.write(startupBytes(3, 0, "user", "alice", "database", "postgres"))
	if m, is := ok.receive().(*pgproto3.AuthenticationOk); !is {
		t.Fatalf("want AuthenticationOk, got %#v", m)
	}
	for {
		m := ok.receive()
		if _, done := m.(*pgproto3.ReadyForQuery); done {
			break
		}
		switch m.(type) {
		case *pgproto3.ParameterStatus, *pgproto3.BackendKeyData:
		default:
			t.Fatalf("unexpected %#v before ReadyForQuery", m)
		}
	}
}

func TestSSLAndGSSRequestsAreAnsweredNWithoutTLS(t *testing.T) {
	g := startGateway(t, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	r := dialRaw(t, g.addr())
	r.write(requestBytes(80877104)) // GSSENCRequest
	if b := r.readByte(); b != 'N' {
		t.Fatalf("GSSENCRequest answered %q", b)
	}
	r.write(requestBytes(80877103)) // SSLRequest
	if b := r.readByte(); b != 'N' {
		t.Fatalf("SSLRequest answered %q", b)
	}
	r.write(startupBytes(3, 0, "user", "alice", "database", "postgres"))
	if _, ok := r.receive().(*pgproto3.AuthenticationCleartextPassword); !ok {
		t.Fatal("want a password request")
	}
	// psql's default sslmode=prefer gets 'N' and carries on in plain text.
	out, err := psql(t, fmt.Sprintf("host=127.0.0.1 port=%d user=alice password=alice-Pass-1 dbname=postgres sslmode=prefer", g.port), "SELECT 1")
	if err != nil || out != "1" {
		t.Fatalf("psql sslmode=prefer: %v %s", err, out)
	}
}

// TestWhatAClientSendsWithItsStartupMessageIsKept: a client that sends its
// password (asked for in advance: the rule's method is known to it) and a
// query in the same write as its StartupMessage, after an SSLRequest or
// without one, logs in and gets its query answered. pgwarden reads the
// StartupMessage that follows an SSLRequest through the connection's
// buffered reader (one read where two took its length and body): the bytes
// that came with it must reach the exchange and the session.
func TestWhatAClientSendsWithItsStartupMessageIsKept(t *testing.T) {
	g := startGateway(t, passwordRules, []testUser{{name: "alice", password: "alice-Pass-1"}})
	var pipelined []byte
	pipelined = append(pipelined, startupBytes(3, 0, "user", "alice", "database", "postgres")...)
	pw, _ := (&pgproto3.PasswordMessage{Password: "alice-Pass-1"}).Encode(nil)
	q, _ := (&pgproto3.Query{String: "SELECT 'kept'"}).Encode(nil)
	pipelined = append(append(pipelined, pw...), q...)
	for _, ssl := range []bool{true, false} {
		r := dialRaw(t, g.addr())
		if ssl {
			r.write(requestBytes(80877103))
			if b := r.readByte(); b != 'N' {
				t.Fatalf("SSLRequest answered %q", b)
			}
		}
		r.write(pipelined)
		if _, ok := r.receive().(*pgproto3.AuthenticationCleartextPassword); !ok {
			t.Fatalf("ssl %v: want a password request", ssl)
		}
		var row string
		for {
			m := r.receive()
			switch m := m.(type) {
			case *pgproto3.ErrorResponse:
				t.Fatalf("ssl %v: %s %s", ssl, m.Code, m.Message)
			case *pgproto3.DataRow:
				row = string(m.Values[0])
			}
			if z, ok := m.(*pgproto3.ReadyForQuery); ok && row != "" {
				if row != "kept" || z.TxStatus != 'I' {
					t.Fatalf("ssl %v: got %q", ssl, row)
				}
				break
			}
		}
	}
}

func TestMalformedStartupPacketsAreRefused(t *testing.T) {
	g := startGateway(t, passwordRules, nil)
	t.Run("too short", func(t *testing.T) {
		r := dialRaw(t, g.addr())
		r.write([]byte{0, 0, 0, 3, 0, 3, 0})
		r.expectError("08P01", "invalid length of startup packet")
	})
	t.Run("too long", func(t *testing.T) {
		r := dialRaw(t, g.addr())
		r.write([]byte{0, 0, 0x4e, 0x21, 0, 3, 0, 0}) // 20001 bytes claimed
		r.expectError("08P01", "invalid length of startup packet")
	})
	t.Run("missing terminator", func(t *testing.T) {
		r := dialRaw(t, g.addr())
		b := startupBytes(3, 0, "user", "alice")
		b = b[:len(b)-1]
		b[3]--
		r.write(b)
		r.expectError("08P01", "invalid startup packet layout: expected terminator as last byte")
	})
	t.Run("no user", func(t *testing.T) {
		r := dialRaw(t, g.addr())
		r.write(startupBytes(3, 0, "database", "postgres"))
		r.expectError("28000", "no PostgreSQL user name specified in startup packet")
	})
	t.Run("wrong message during password", func(t *testing.T) {
		r := dialRaw(t, g.addr())
		r.write(startupBytes(3, 0, "user", "alice", "database", "postgres"))
		r.receive()
		r.send(&pgproto3.Query{String: "SELECT 1"})
		r.expectError("08P01", "expected password response, got message type 'Q'")
	})
	t.Run("huge message during password", func(t *testing.T) {
		r := dialRaw(t, g.addr())
		r.write(startupBytes(3, 0, "user", "alice", "database", "postgres"))
		r.receive()
		r.write([]byte{'p', 0x7f, 0xff, 0xff, 0xff})
		r.expectError("08P01", "message of type 'p' too long before authentication")
	})
}

func TestAuthTimeoutEndsASilentClient(t *testing.T) {
	g := startGatewayServer(t, `auth_timeout = "1s"`, passwordRules, nil)
	r := dialRaw(t, g.addr())
	r.expectError("08P01", "authentication timeout")

	// Mid-authentication too: the password is never sent.
	r2 := dialRaw(t, g.addr())
	r2.write(startupBytes(3, 0, "user", "alice", "database", "postgres"))
	r2.receive()
	r2.expectError("08P01", "authentication timeout")
}

func TestMaxConnectionsRefusesTheExcess(t *testing.T) {
	g := startGatewayServer(t, "max_connections = 2", passwordRules, nil)
	sock := fmt.Sprintf("host=%s port=%d user=alice dbname=postgres", g.sockDir, g.port)
	a := g.mustConnectString(sock)
	g.mustConnectString(sock)
	_, err := g.connectString(sock)
	wantPgError(t, err, "53300", "too many connections")
	a.Close(context.Background())
	// The slot is free again once a session ends.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := g.connectString(sock)
		if err == nil {
			c.Close(context.Background())
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot never freed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPeerOnTheUnixSocketComparesTheOSUser(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, `
[[hba]]
protocol = "pg"
address = "local"
method = "peer"
`, []testUser{{name: me.Username, extra: `backend_user = "alice"` + "\n"}})
	sock := fmt.Sprintf("host=%s port=%d dbname=postgres", g.sockDir, g.port)
	c := g.mustConnectString(sock + " user=" + me.Username)
	if got := queryOne(t, c, "SELECT current_user"); got != "alice" {
		t.Fatalf("peer user mapped to %q", got)
	}
	_, err = g.connectString(sock + " user=bob")
	wantPgError(t, err, "28000", `Peer authentication failed for user "bob"`)
	g.waitLog("do not match", 1)
}

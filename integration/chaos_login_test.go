package integration

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
)

// An auth gateway is judged by the one login it wrongly lets through.
// Random logins (users known, unknown and spelled otherwise, databases,
// TLS or not, client certificates of the trusted CA for the user, for
// another user or from an untrusted CA, every form of the replication
// parameter) each answer the
// authentication request in one of the ways a client, a broken one or an
// attacker might: the right password, a wrong one, another user's, an
// empty one, the other method's message, a SCRAM exchange whose proof,
// nonce or channel-binding flag was changed, another user's name inside
// the SCRAM message, or nothing at all. A model of the rules below says
// for each whether it must be let in; AuthenticationOk must come exactly
// then. (PostgreSQL's semantics: the SCRAM message's own user name is
// ignored, the startup packet's user is the one proven.)
func TestRandomLoginsGetInExactlyWhenTheirRuleSaysSo(t *testing.T) {
	seed, attempts := chaosSettings(t, 250)
	etlSecret := strings.Repeat("RVRM", 11)
	noteSecret(etlSecret)
	users := []testUser{
		{name: "svc_reports"},
		{name: "svc_etl", extra: fmt.Sprintf("secret = %q\n", etlSecret)},
		{name: "alice", password: "alice-Pass-1"},
		{name: "bob", password: "bob-Pass-2", algo: "bcrypt"},
		{name: "carol", password: "carol-Pass-3"},
		{name: "dave", password: "dave-Pass-4"},
		{name: "eve", password: "eve-Pass-5"},
		{name: "erin", password: "erin-Pass-6"},
	}
	// Client certificates of the gateway's CA for svc_reports and alice,
	// and one for svc_reports from a CA it does not trust.
	dir := t.TempDir()
	own := newPKI(t, filepath.Join(dir, "certs"), "svc_reports", "alice")
	foreign := newPKI(t, t.TempDir(), "svc_reports")
	g := startTLSGatewayIn(t, dir, gwOptions{}, loginChaosRules, users)
	passwords := map[string]string{}
	for _, u := range users {
		passwords[u.name] = u.password
	}
	// svc_etl's password is a token of its own (the jwt method takes
	// one as the cleartext password on the wire).
	etl := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "pgwarden", "sub": "svc_etl", "exp": time.Now().Add(time.Hour).Unix()})
	key, _ := base64.StdEncoding.DecodeString(etlSecret)
	tok, err := etl.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	noteSecret(tok)
	passwords["svc_etl"] = tok
	clientCerts := map[string]tls.Certificate{}
	for name, p := range map[string]*pki{"svc_reports": own, "alice": own, "foreign svc_reports": foreign} {
		c, err := tls.LoadX509KeyPair(p.path(strings.TrimPrefix(name, "foreign ")+".crt"), p.path(strings.TrimPrefix(name, "foreign ")+".key"))
		if err != nil {
			t.Fatal(err)
		}
		clientCerts[name] = c
	}
	const workers = 4
	var in, out atomic.Int64
	defer func() { t.Logf("%d logins let in, %d refused, each as the rules say", in.Load(), out.Load()) }()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(200+w)))
			for i := 0; i < attempts; i++ {
				a := randomLoginAttempt(rng)
				want := a.mayEnter()
				got, trace, err := a.try(g.addr(), passwords, clientCerts)
				if err != nil {
					t.Errorf("login w%d-%d %+v: %v\n%s", w, i, a, err, trace)
					return
				}
				if got != want {
					t.Errorf("login w%d-%d %+v: let in %v, the rules say %v\n%s", w, i, a, got, want, trace)
					return
				}
				if got {
					in.Add(1)
				} else {
					out.Add(1)
				}
			}
		}()
	}
	wg.Wait()
}

// loginChaosRules are the rules the model in mayEnter follows.
const loginChaosRules = `
[tokens]

[[hba]]
user = ["eve"]
method = "trust"

[[hba]]
user = ["erin"]
method = "reject"

[[hba]]
user = ["alice"]
database = ["app_prod"]
method = "reject"

[[hba]]
user = ["carol", "bob"]
method = "password"

[[hba]]
user = ["dave"]
ssl = "on"
method = "scram-sha-256"

[[hba]]
user = ["dave"]
method = "reject"

[[hba]]
user = ["svc_reports"]
method = "cert"

[[hba]]
user = ["svc_etl"]
method = "jwt"

[[hba]]
method = "scram-sha-256"
`

// loginAttempt is one random login.
type loginAttempt struct {
	User, DB    string
	TLS         bool
	Replication string // "" for no parameter
	Cert        string // the client certificate presented over TLS, if any
	Answer      string // how the client answers the authentication request
}

var loginAnswers = []string{
	"right", "right", "right", "wrong", "empty", "other user's password",
	"other method's message", "scram proof changed", "scram nonce changed",
	"scram channel binding claimed", "scram names another user", "scram names another user with theirs",
	"scram-plus", "scram-plus", "scram-plus bound to another certificate", "unknown mechanism",
	"nothing",
}

func randomLoginAttempt(rng *rand.Rand) loginAttempt {
	users := []string{"alice", "bob", "carol", "dave", "eve", "erin", "ghost", "Alice", "alice ", "svc_reports", "svc_etl"}
	dbs := []string{"postgres", "app_prod", "nosuchdb"}
	repl := []string{"", "", "", "", "true", "t", "on", "yes", "1", "database", "false", "off", "no", "0", "bogus", "TRUE", "Database"}
	a := loginAttempt{
		User:        users[rng.IntN(len(users))],
		DB:          dbs[rng.IntN(len(dbs))],
		TLS:         rng.IntN(2) == 0,
		Replication: repl[rng.IntN(len(repl))],
		Answer:      loginAnswers[rng.IntN(len(loginAnswers))],
	}
	if a.TLS {
		a.Cert = []string{"", "", "svc_reports", "alice", "foreign svc_reports"}[rng.IntN(5)]
	}
	return a
}

// physical says whether the replication parameter asks for a physical
// walsender, read as PostgreSQL's parse_bool does; invalid says whether
// PostgreSQL refuses the value.
func (a loginAttempt) physical() (physical, invalid bool) {
	switch strings.ToLower(a.Replication) {
	case "", "false", "off", "no", "0":
		return false, false
	case "database":
		return false, a.Replication != "database" // the keyword is case-sensitive
	case "true", "t", "on", "yes", "1":
		return true, false
	}
	return false, true
}

// mayEnter is the model of loginChaosRules: whether the attempt must get
// AuthenticationOk.
func (a loginAttempt) mayEnter() bool {
	physical, invalid := a.physical()
	if invalid || physical {
		// No rule lists the replication database, and "all" does not
		// match a physical replication connection.
		return false
	}
	var method string
	switch {
	case a.User == "eve":
		method = "trust"
	case a.User == "erin":
		method = "reject"
	case a.User == "alice" && a.DB == "app_prod":
		method = "reject"
	case a.User == "carol" || a.User == "bob":
		method = "password"
	case a.User == "dave" && a.TLS:
		method = "scram"
	case a.User == "dave":
		method = "reject"
	case a.User == "svc_reports":
		method = "cert"
	case a.User == "svc_etl":
		method = "jwt"
	default:
		method = "scram"
	}
	known := map[string]bool{"alice": true, "bob": true, "carol": true, "dave": true, "eve": true, "erin": true, "svc_etl": true}[a.User]
	switch method {
	case "trust":
		return true
	case "reject":
		return false
	case "cert":
		// The CN is the user, from a certificate of the client CA; no
		// password is asked.
		return a.TLS && a.Cert == a.User
	case "password", "jwt": // jwt: the token as the cleartext password
		// Every answer but these sends the right password in a
		// PasswordMessage when asked for one.
		switch a.Answer {
		case "wrong", "empty", "other user's password", "scram names another user with theirs", "nothing", "other method's message":
			return false
		}
		// (The SCRAM answers send a PasswordMessage with the right
		// password when asked for one.)
		return known
	default: // scram (bob's bcrypt hash cannot do SCRAM, but bob never gets here)
		switch a.Answer {
		case "right", "scram names another user":
			return known
		case "scram channel binding claimed":
			// Over TLS the server offered PLUS, so "y" is a
			// downgrade; without TLS it is what a client that could
			// bind sends, and the right password gets in.
			return known && !a.TLS
		case "scram-plus":
			// Bound to the server's certificate: offered over TLS
			// only.
			return known && a.TLS
		}
		return false
	}
}

// try makes the login and reports whether AuthenticationOk came.
func (a loginAttempt) try(addr string, passwords map[string]string, certs map[string]tls.Certificate) (bool, string, error) {
	var log []string
	note := func(format string, args ...any) { log = append(log, fmt.Sprintf(format, args...)) }
	trace := func() string { return "  " + strings.Join(log, "\n  ") }
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return false, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var conn net.Conn = c
	if a.TLS {
		c.Write([]byte{0, 0, 0, 8, 4, 210, 22, 47})
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'S' {
			return false, trace(), fmt.Errorf("SSLRequest answered %q, %v", b[0], err)
		}
		cfg := &tls.Config{InsecureSkipVerify: true}
		if a.Cert != "" {
			cfg.Certificates = []tls.Certificate{certs[a.Cert]}
		}
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			// A certificate the server does not trust may end the
			// handshake, as PostgreSQL's does: no one is let in then.
			note("TLS handshake: %v", err)
			return false, trace(), nil
		}
		conn = tc
	}
	fe := pgproto3.NewFrontend(conn, conn)
	params := []string{"user", a.User, "database", a.DB}
	if a.Replication != "" {
		params = append(params, "replication", a.Replication)
	}
	conn.Write(startupBytes(3, 0, params...))
	pw := passwords[strings.TrimSpace(strings.ToLower(a.User))]
	switch a.Answer {
	case "wrong":
		pw += "x"
	case "empty":
		pw = ""
	case "other user's password", "scram names another user with theirs":
		pw = passwords["alice"]
		if a.User == "alice" {
			pw = passwords["bob"]
		}
		if a.User == "svc_etl" && a.Answer == "other user's password" {
			pw = passwords["svc_etl"][:len(passwords["svc_etl"])-2] + "AA" // its signature changed
		}
	}
	var conv *scram.ClientConversation
	for {
		m, err := fe.Receive()
		if err != nil {
			note("connection ended: %v", err)
			return false, trace(), nil
		}
		switch m := m.(type) {
		case *pgproto3.AuthenticationOk:
			note("AuthenticationOk")
			return true, trace(), nil
		case *pgproto3.ErrorResponse:
			note("ErrorResponse %s %s", m.Code, m.Message)
			return false, trace(), nil
		case *pgproto3.AuthenticationCleartextPassword:
			note("AuthenticationCleartextPassword")
			switch a.Answer {
			case "nothing":
				return false, trace(), nil
			case "other method's message":
				fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abcdef")})
			default:
				fe.Send(&pgproto3.PasswordMessage{Password: pw})
			}
		case *pgproto3.AuthenticationSASL:
			note("AuthenticationSASL %v", m.AuthMechanisms)
			switch a.Answer {
			case "nothing":
				return false, trace(), nil
			case "other method's message":
				fe.Send(&pgproto3.PasswordMessage{Password: pw})
			default:
				name := ""
				if strings.HasPrefix(a.Answer, "scram names another user") {
					name = "alice"
					if a.User == "alice" {
						name = "bob"
					}
				}
				client, err := scram.SHA256.NewClient(name, pw, "")
				if err != nil {
					return false, trace(), err
				}
				mech := "SCRAM-SHA-256"
				switch a.Answer {
				case "scram channel binding claimed":
					// "y": the client could bind but thinks the server
					// cannot (see mayEnter).
					conv = client.NewConversationAdvertisingChannelBinding()
				case "scram-plus", "scram-plus bound to another certificate":
					// tls-server-end-point: the SHA-256 of the server's
					// certificate (ECDSA with SHA-256). Without TLS the
					// client binds to nothing, and the server, which
					// offered no PLUS, must refuse the mechanism.
					data := make([]byte, 32)
					if tc, ok := conn.(*tls.Conn); ok {
						h := sha256.Sum256(tc.ConnectionState().PeerCertificates[0].Raw)
						data = h[:]
					}
					if a.Answer != "scram-plus" {
						data[0] ^= 1
					}
					mech = "SCRAM-SHA-256-PLUS"
					conv = client.NewConversationWithChannelBinding(scram.ChannelBinding{Type: scram.ChannelBindingTLSServerEndpoint, Data: data})
				case "unknown mechanism":
					mech = "SCRAM-SHA-1"
					conv = client.NewConversation()
				default:
					conv = client.NewConversation()
				}
				first, _ := conv.Step("")
				fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: mech, Data: []byte(first)})
			}
		case *pgproto3.AuthenticationSASLContinue:
			note("AuthenticationSASLContinue")
			final, err := conv.Step(string(m.Data))
			if err != nil {
				note("client: %v", err)
				return false, trace(), nil
			}
			switch a.Answer {
			case "scram proof changed":
				i := strings.Index(final, ",p=") + 3
				b := []byte(final)
				b[i] ^= 1
				if b[i] == '=' || b[i] == ',' {
					b[i] = 'A'
				}
				final = string(b)
			case "scram nonce changed":
				i := strings.Index(final, ",r=") + 3
				b := []byte(final)
				b[i+2] = 'Z' ^ b[i+2] ^ 'Y'
				final = string(b)
			}
			fe.Send(&pgproto3.SASLResponse{Data: []byte(final)})
		case *pgproto3.AuthenticationSASLFinal:
			note("AuthenticationSASLFinal")
		default:
			note("%T", m)
		}
		if err := fe.Flush(); err != nil {
			note("write: %v", err)
			return false, trace(), nil
		}
	}
}

package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/jackc/pgx/v5"
)

// TestLoginParity runs the files under testdata/parity against both
// frontends of the one login gate: each case is a configuration, a
// connection attempt, and what the Postgres wire client and the HTTP client
// see. Where both apply, both answers are in the file, so a drift between the
// two doors fails a test. Directives:
//
//	users              one user a line: NAME PASSWORD [key=value ...] (PASSWORD "-" for none)
//	gateway [tls]      start a gateway (HTTP on; with tls: [tls], client certificates
//	                   alice and bob, HTTPS) with the input as its rules and sections
//	token user=NAME    issue a token of pgwarden's own for NAME (then reload)
//	login user=U [password=P] [db=D] [cert=NAME] [token] [on=pg|http|both]
//	                   try both doors; print "pg: ..." and "http: ..."
//
// Run with -rewrite to update the expected answers after a deliberate change.
func TestLoginParity(t *testing.T) {
	datadriven.Walk(t, "testdata/parity", func(t *testing.T, path string) {
		h := &parityHarness{t: t}
		datadriven.RunTest(t, path, h.run)
	})
}

type parityHarness struct {
	t      *testing.T
	users  []testUser
	g      *gateway
	tls    bool
	pki    *pki
	tokens map[string]string
}

func (h *parityHarness) run(t *testing.T, d *datadriven.TestData) string {
	switch d.Cmd {
	case "users":
		h.users = nil
		for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
			f := strings.Fields(line)
			u := testUser{name: f[0]}
			if len(f) > 1 && f[1] != "-" {
				u.password = f[1]
			}
			for _, kv := range f[min(2, len(f)):] {
				k, v, _ := strings.Cut(kv, "=")
				u.extra += fmt.Sprintf("%s = %s\n", k, v)
			}
			h.users = append(h.users, u)
		}
		return ""
	case "gateway":
		if h.g != nil {
			h.g.kill()
		}
		h.tls = d.HasArg("tls")
		h.tokens = map[string]string{}
		if h.tls {
			dir := t.TempDir()
			h.pki = newPKI(t, filepath.Join(dir, "certs"), "alice", "bob")
			g := &gateway{t: t, dir: dir, port: freePortPair(), sockDir: dir, log: &lockedBuffer{}, done: make(chan struct{}),
				opts: gwOptions{http: true, server: "http_tls = true"}}
			g.writeConfig(tlsSection + d.Input)
			g.writeUsers(h.users)
			g.start()
			h.g = g
		} else {
			h.g = startGatewayWith(t, gwOptions{http: true}, d.Input, h.users)
		}
		return ""
	case "token":
		var user string
		d.ScanArgs(t, "user", &user)
		h.g.reloadAfter(func() {
			out, stderr, code := runCLI(t, "", "token", "create", "-c", h.g.configPath(), "--user", user)
			if code != 0 {
				t.Fatalf("token create: %s", stderr)
			}
			h.tokens[user] = strings.TrimSpace(out)
			noteSecret(h.tokens[user])
		})
		return ""
	case "login":
		return h.login(t, d)
	}
	t.Fatalf("unknown directive %s", d.Cmd)
	return ""
}

func (h *parityHarness) login(t *testing.T, d *datadriven.TestData) string {
	user, password, db, cert, on := "", "", "postgres", "", "both"
	for _, a := range d.CmdArgs {
		v := ""
		if len(a.Vals) > 0 {
			v = a.Vals[0]
		}
		switch a.Key {
		case "user":
			user = v
		case "password":
			password = v
			noteSecret(v)
		case "db":
			db = v
		case "cert":
			cert = v
		case "on":
			on = v
		case "token":
		default:
			t.Fatalf("unknown login argument %s", a.Key)
		}
	}
	token := ""
	if d.HasArg("token") {
		token = h.tokens[user]
	}
	var out []string
	if on == "both" || on == "pg" {
		out = append(out, "pg: "+h.loginPG(t, user, password, token, db, cert))
	}
	if on == "both" || on == "http" {
		out = append(out, "http: "+h.loginHTTP(t, user, password, token, db, cert))
	}
	return strings.Join(out, "\n") + "\n"
}

// loginPG connects with pgx as a driver user would and reports what the
// client saw.
func (h *parityHarness) loginPG(t *testing.T, user, password, token, db, cert string) string {
	conn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s connect_timeout=20 sslmode=disable", h.g.port, user, db)
	if h.tls {
		conn = fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s connect_timeout=20 sslmode=require", h.g.port, user, db)
		if cert != "" {
			conn += fmt.Sprintf(" sslcert=%s sslkey=%s", h.pki.path(cert+".crt"), h.pki.path(cert+".key"))
		}
	}
	if token != "" {
		password = token
	}
	if password != "" {
		conn += fmt.Sprintf(" password='%s'", password)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, conn)
	if err != nil {
		if pe := pgErrorOrNil(err); pe != nil {
			return pe.Code + " " + pe.Message
		}
		return "error " + err.Error()
	}
	defer c.Close(context.Background())
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return "query failed: " + err.Error()
	}
	return "ok"
}

// loginHTTP posts SELECT 1 to /_sql with the credentials as curl would
// send them, and reports the status, the SQLSTATE and message, and the
// WWW-Authenticate scheme.
func (h *parityHarness) loginHTTP(t *testing.T, user, password, token, db, cert string) string {
	scheme := "http"
	tr := &http.Transport{}
	if h.tls {
		scheme = "https"
		cfg := &tls.Config{InsecureSkipVerify: true}
		if cert != "" {
			pair, err := tls.LoadX509KeyPair(h.pki.path(cert+".crt"), h.pki.path(cert+".key"))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		tr.TLSClientConfig = cfg
	}
	defer tr.CloseIdleConnections()
	url := fmt.Sprintf("%s://127.0.0.1:%d/_sql?db=%s", scheme, h.g.port+1, db)
	req, _ := http.NewRequest("POST", url, strings.NewReader(`{"stmt": "SELECT 1"}`))
	req.Header.Set("Content-Type", "application/json")
	switch {
	case token != "":
		req.Header.Set("Authorization", "Bearer "+token)
	default:
		// The user a request claims is its Basic user name, also beside a
		// client certificate (whose CN must then equal it).
		req.SetBasicAuth(user, password)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return "error " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 {
		return "200"
	}
	out := fmt.Sprintf("%d %s %s", resp.StatusCode, jsonField(body, "code"), jsonField(body, "message"))
	if ch := resp.Header.Get("WWW-Authenticate"); ch != "" {
		out += " (" + strings.Fields(ch)[0] + ")"
	}
	return out
}

// jsonField reads error.KEY of an error body without failing the test on a
// body that is not JSON.
func jsonField(body []byte, key string) string {
	s := string(body)
	i := strings.Index(s, `"`+key+`":"`)
	if i < 0 {
		return "?"
	}
	s = s[i+len(key)+4:]
	var b strings.Builder
	for j := 0; j < len(s); j++ {
		if s[j] == '\\' && j+1 < len(s) {
			j++
			b.WriteByte(s[j])
			continue
		}
		if s[j] == '"' {
			break
		}
		b.WriteByte(s[j])
	}
	return b.String()
}

package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
	"golang.org/x/crypto/bcrypt"
)

// A login under way when a reload revokes its credentials does not
// complete. The state a login is judged by is read when its connection is
// accepted, and a reload ends the sessions of revoked users, not the
// logins still in their exchange; so a client holding a stolen password
// could start SCRAM logins, wait at the last step (up to auth_timeout),
// and finish them with the old password after the administrator changed
// it, getting sessions that no reload would ever end.
func TestALoginUnderWayWhenAReloadRevokesItsPasswordIsRefused(t *testing.T) {
	users := []testUser{{name: "alice", password: "alice-Pass-1"}}
	g := startGateway(t, `
[[hba]]
method = "scram-sha-256"
`, users)
	c, err := net.Dial("tcp", g.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fe := pgproto3.NewFrontend(c, c)
	if _, err := c.Write(startupBytes(3, 0, "user", "alice", "database", "postgres")); err != nil {
		t.Fatal(err)
	}
	if m, err := fe.Receive(); err != nil {
		t.Fatal(err)
	} else if _, ok := m.(*pgproto3.AuthenticationSASL); !ok {
		t.Fatalf("want AuthenticationSASL, got %#v", m)
	}
	client, err := scram.SHA256.NewClient("", "alice-Pass-1", "")
	if err != nil {
		t.Fatal(err)
	}
	conv := client.NewConversation()
	first, _ := conv.Step("")
	fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte(first)})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	m, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	cont, ok := m.(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		t.Fatalf("want AuthenticationSASLContinue, got %#v", m)
	}
	final, err := conv.Step(string(cont.Data))
	if err != nil {
		t.Fatal(err)
	}
	// The administrator changes alice's password while the login waits.
	g.reloadAfter(func() { g.writeUsers([]testUser{{name: "alice", password: "alice-New-2"}}) })
	g.waitLog("a reload revoked the user's login", 1)
	fe.Send(&pgproto3.SASLResponse{Data: []byte(final)})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	refusal := loginRefusal(t, fe)
	if refusal == nil {
		t.Fatal("a login with the revoked password completed after the reload")
	}
	if refusal.Code != "28P01" || refusal.Message != `password authentication failed for user "alice"` {
		t.Fatalf("refused, but with %s %s", refusal.Code, refusal.Message)
	}
	g.waitLog("revoked by a reload during the login", 1)
	// The new password logs in.
	g.mustConnect("alice", "alice-New-2", "postgres").Close(context.Background())
}

// loginRefusal reads a login's answers to its end: the ErrorResponse that
// refused it, or nil when it completed (ReadyForQuery).
func loginRefusal(t *testing.T, fe *pgproto3.Frontend) *pgproto3.ErrorResponse {
	t.Helper()
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("the login ended without an answer: %v", err)
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			return m
		case *pgproto3.ReadyForQuery:
			return nil
		}
	}
}

// The same for a client certificate: a TLS handshake made before a reload
// that revokes the certificate (crl_file) no longer carries a login after
// it. Before, the certificate was checked against the list of the
// handshake's time when the startup packet came, however late.
func TestALoginUnderWayWhenAReloadRevokesItsCertificateIsRefused(t *testing.T) {
	g, p := startCRLGateway(t, "alice")
	tc := tlsDialPG(t, g, p, "alice")
	if out, errOut, code := runCLI(t, "", "certs", "revoke", "--dir", p.dir, "alice"); code != 0 {
		t.Fatalf("revoke: %d %s %s", code, out, errOut)
	}
	g.waitLog(`"msg":"reloaded"`, 1)
	fe := pgproto3.NewFrontend(tc, tc)
	if _, err := tc.Write(startupBytes(3, 0, "user", "alice", "database", "postgres")); err != nil {
		t.Fatal(err)
	}
	m := loginRefusal(t, fe)
	if m == nil {
		t.Fatal("a login with the revoked certificate completed after the reload")
	}
	if m.Code != "28000" || !strings.Contains(m.Message, "certificate") {
		t.Fatalf("refused, but with %s %s", m.Code, m.Message)
	}
}

// An HTTP request checks its password against the state of its start. A
// password changed while a slow hash was being checked must not let the
// request through: before, /_sql ran the statement after the change, and
// /_token gave the old password a token, signed with the secret made for
// it after the change, so it stayed valid.
func TestAnHTTPRequestWhosePasswordIsRevokedWhileItIsCheckedIsRefused(t *testing.T) {
	slow, err := bcrypt.GenerateFromPassword([]byte("bob-Slow-1"), 14)
	if err != nil {
		t.Fatal(err)
	}
	bob := testUser{name: "bob", extra: fmt.Sprintf("password = %q\n", slow)}
	for _, tc := range []struct{ path, body string }{
		{"/_token", ""},
		{"/_sql?db=postgres", `{"stmt":"SELECT 1"}`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			g := startHTTPGateway(t, "", httpRules, []testUser{bob})
			type answer struct {
				status int
				body   string
				err    error
			}
			done := make(chan answer, 1)
			start := time.Now()
			go func() {
				req, _ := http.NewRequest("POST", g.httpURL()+tc.path, strings.NewReader(tc.body))
				req.Header.Set("Content-Type", "application/json")
				req.SetBasicAuth("bob", "bob-Slow-1")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					done <- answer{err: err}
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				done <- answer{status: resp.StatusCode, body: string(b)}
			}()
			time.Sleep(150 * time.Millisecond)
			g.writeUsers([]testUser{{name: "bob", password: "bob-New-Pass-2"}})
			g.signal(syscall.SIGHUP)
			g.waitLog(`"msg":"reloaded"`, 1)
			reloaded := time.Since(start)
			a := <-done
			if a.err != nil {
				t.Fatal(a.err)
			}
			if took := time.Since(start); took < reloaded+50*time.Millisecond {
				t.Fatalf("the test's premise: the bcrypt check (%v) must outlast the reload (%v)", took, reloaded)
			}
			if a.status != 401 || !strings.Contains(a.body, `"28P01"`) {
				t.Fatalf("the password changed during its check got through: %d %s", a.status, a.body)
			}
			g.waitLog("the login was revoked by a reload during the login", 1)
			if status, _, out := httpDo(t, "POST", g.httpURL()+tc.path, tc.body, basic("bob", "bob-New-Pass-2")); status != 200 {
				t.Fatalf("the new password: %d %s", status, jsonText(t, out))
			}
		})
	}
}

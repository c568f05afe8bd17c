package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
)

// "The one instance that still accepts a revoked password": while alice's
// password is changed again and again (each change a new password, the
// users file rewritten and reloaded), random logins over the wire (SCRAM,
// some pausing before their last message so that changes land in the
// middle of the exchange) and over HTTP (Basic, whose verified
// credentials are cached) try the current password and the ones before
// it. A login may get in only with a password still in force when its
// proof arrived: an HTTP request's when it was sent, a SCRAM login's when
// its last message was (a change done in the middle of an exchange
// revokes the password for it), or one a change made after that. The
// test counts the logins that got in, so a
// run in which none did fails rather than proving nothing.
func TestRandomLoginsDuringPasswordChangesNeverUseARevokedPassword(t *testing.T) {
	seed, changes := chaosSettings(t, 25)
	password := func(epoch int) string { return fmt.Sprintf("alice-Epoch-%d", epoch) }
	users := func(epoch int) []testUser { return []testUser{{name: "alice", password: password(epoch)}} }
	g := startGatewayWith(t, gwOptions{http: true}, `
[[hba]]
protocol = "pg"
method = "scram-sha-256"

[[hba]]
protocol = "http"
method = "password"
`, users(0))
	// epoch is the number of the password whose reload is known to be
	// done: the one in force from then on (the next may already be, its
	// reload not yet seen).
	var epoch atomic.Int64
	stop := make(chan struct{})
	var reloader sync.WaitGroup
	reloader.Add(1)
	go func() {
		defer reloader.Done()
		defer close(stop)
		rng := rand.New(rand.NewPCG(seed, 400))
		count := func() int { return strings.Count(g.log.String(), `"msg":"reloaded"`) }
		for e := 1; e <= changes; e++ {
			time.Sleep(time.Duration(80+rng.IntN(150)) * time.Millisecond)
			before := count()
			g.writeUsers(users(e))
			g.cmd.Process.Signal(syscall.SIGHUP) // by the PID we started
			for deadline := time.Now().Add(15 * time.Second); count() == before; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Errorf("the reload of change %d never happened", e)
					return
				}
			}
			epoch.Store(int64(e))
		}
	}()
	var in, out atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(410+w)))
			client := &http.Client{Timeout: 30 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				start := int(epoch.Load())
				used := start - rng.IntN(3) // in force, or one or two changes old
				if used < 0 {
					used = 0
				}
				var ok bool
				var how string
				var err error
				if rng.IntN(2) == 0 {
					pause := time.Duration(0)
					if rng.IntN(2) == 0 {
						pause = time.Duration(rng.IntN(250)) * time.Millisecond
					}
					how = fmt.Sprintf("wire SCRAM, %v before the last message", pause)
					// The proof is judged by the state in force when
					// it arrives: a change seen done before the last
					// message is sent revokes the password for it.
					ok, err = scramLogin(g.addr(), "alice", password(used), pause, func() { start = int(epoch.Load()) })
				} else {
					how = "HTTP Basic"
					ok, err = basicRequest(client, g.httpURL(), "alice", password(used))
				}
				end := int(epoch.Load())
				if err != nil {
					t.Errorf("login w%d-%d (%s): %v", w, i, how, err)
					return
				}
				if ok && (used < start || used > end+1) {
					t.Errorf("login w%d-%d (%s) got in with the password of change %d, revoked by change %d before its proof was sent (changes %d to %d were in force from then on)",
						w, i, how, used, used+1, start, end+1)
					return
				}
				if ok {
					in.Add(1)
				} else {
					out.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	reloader.Wait()
	t.Logf("%d changes; %d logins got in, %d were refused", changes, in.Load(), out.Load())
	if in.Load() == 0 {
		t.Fatal("no login got in: the test proved nothing")
	}
}

// scramLogin logs in by SCRAM with password, pausing before the last
// message (and calling beforeFinal just before it is sent), and reports
// whether AuthenticationOk came.
func scramLogin(addr, user, password string, pause time.Duration, beforeFinal func()) (bool, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fe := pgproto3.NewFrontend(c, c)
	if _, err := c.Write(startupBytes(3, 0, "user", user, "database", "postgres")); err != nil {
		return false, err
	}
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		return false, err
	}
	conv := client.NewConversation()
	for {
		m, err := fe.Receive()
		if err != nil {
			return false, nil
		}
		switch m := m.(type) {
		case *pgproto3.AuthenticationOk:
			return true, nil
		case *pgproto3.ErrorResponse:
			if m.Code != "28P01" {
				return false, fmt.Errorf("refused with %s %s", m.Code, m.Message)
			}
			return false, nil
		case *pgproto3.AuthenticationSASL:
			first, _ := conv.Step("")
			fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte(first)})
		case *pgproto3.AuthenticationSASLContinue:
			final, err := conv.Step(string(m.Data))
			if err != nil {
				return false, err
			}
			time.Sleep(pause)
			beforeFinal()
			fe.Send(&pgproto3.SASLResponse{Data: []byte(final)})
		case *pgproto3.AuthenticationSASLFinal:
		default:
			return false, fmt.Errorf("unexpected %T", m)
		}
		if err := fe.Flush(); err != nil {
			return false, nil
		}
	}
}

// basicRequest runs SELECT 1 over /_sql with Basic credentials and
// reports whether it was let in.
func basicRequest(client *http.Client, base, user, password string) (bool, error) {
	status, body, err := postSQL(context.Background(), client, base+"/_sql?db=postgres", map[string]any{"stmt": "SELECT 1"}, basicAuth(user, password))
	switch {
	case err != nil:
		return false, err
	case status == 200:
		return true, nil
	case status == 401:
		return false, nil
	}
	return false, fmt.Errorf("answered %d %s", status, body)
}

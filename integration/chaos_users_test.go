package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestRandomUserChangesFromEveryPathEndExactlyTheRevokedSessions: users
// (in a users file, or in a PostgreSQL store shared by two instances) are
// changed at random by every path that changes them (pgwarden user
// passwd, add and del; ALTER USER, DROP USER, CREATE USER and CREATE TOKEN
// on the admin console; the web console's password form), while wire and
// console sessions of those users stay open. Between checkpoints the file
// watch is sometimes held off (a file in the users file's folder touched
// faster than its 300 ms of quiet), so that a console change reads and
// brings in command-line changes no reload has brought yet. At each
// checkpoint, with every change in force, a session is alive exactly when
// its user still exists and was not changed since it logged in, and the
// current passwords log in (wire and HTTP Basic, whose verified
// credentials are cached) while the previous ones do not. A first token
// secret revokes nothing (CREATE TOKEN), so those sessions stay.
func TestRandomUserChangesFromEveryPathEndExactlyTheRevokedSessions(t *testing.T) {
	seed, checkpoints := chaosSettings(t, 6)
	t.Run("users file", func(t *testing.T) {
		g := startGatewayWith(t, gwOptions{http: true, httpSection: "default_database = \"postgres\"\n"}, "\n[[hba]]\nmethod = \"password\"\n", chaosUsers)
		userChangesAtRandom(t, seed, checkpoints, []*gateway{g})
	})
	// Two instances of one PostgreSQL store: changes reach the other
	// instance by NOTIFY, console sessions are shared, and each change
	// is made on either instance.
	t.Run("store, two instances", func(t *testing.T) {
		freshStore(t)
		rules := storeSection + "\n[[hba]]\nmethod = \"password\"\n"
		o := gwOptions{http: true, httpSection: "default_database = \"postgres\"\n"}
		a := newGateway(t, o, rules)
		a.fillStore(t, chaosUsers)
		a.start()
		b := startGatewayWith(t, o, rules, nil)
		userChangesAtRandom(t, seed, checkpoints, []*gateway{a, b})
	})
}

// chaosUsers are the users the user-change test starts with: an admin it
// never changes, and four users of the test cluster's roles.
var chaosUsers = []testUser{{name: "root", password: "root-Admin-1", extra: `roles = ["admin"]` + "\n"},
	{name: "alice", password: "alice-Gen-0"}, {name: "bob", password: "bob-Gen-0"}, {name: "carol", password: "carol-Gen-0"}, {name: "dave", password: "dave-Gen-0"}}

func userChangesAtRandom(t *testing.T, seed uint64, checkpoints int, gws []*gateway) {
	rng := rand.New(rand.NewPCG(seed, 777))
	type user struct {
		exists   bool
		password string
		gen      int // changes that revoke: each one ends the sessions before it
		old      []string
	}
	var names []string
	model := map[string]*user{}
	for _, u := range chaosUsers[1:] {
		names = append(names, u.name)
		model[u.name] = &user{exists: true, password: u.password}
	}
	some := func() *gateway { return gws[rng.IntN(len(gws))] }

	type wireSession struct {
		user string
		gen  int
		c    *pgx.Conn
	}
	type webSession struct {
		user string
		gen  int
		cc   *consoleClient
		csrf string
	}
	var wires []*wireSession
	var webs []*webSession
	t.Cleanup(func() {
		for _, s := range wires {
			s.c.Close(context.Background())
		}
	})
	newPassword := func(n string) string {
		pw := fmt.Sprintf("%s-Gen-%d-%d", n, model[n].gen+1, rng.IntN(1e6))
		noteSecret(pw)
		return pw
	}
	changed := func(n, pw string, exists bool) {
		u := model[n]
		if u.exists {
			u.old = append(u.old, u.password)
		}
		u.exists, u.password = exists, pw
		u.gen++
	}
	cli := func(stdin string, args ...string) {
		t.Helper()
		if _, errOut, code := runCLI(t, stdin, append(args, "-c", some().configPath())...); code != 0 {
			t.Fatalf("pgwarden %v: %s", args, errOut)
		}
	}
	console := func(sql string) {
		t.Helper()
		if out, err := psql(t, some().connString("root", "root-Admin-1", "pgwarden"), sql); err != nil {
			t.Fatalf("%s: %v\n%s", sql, err, out)
		}
	}
	reloads := func(g *gateway) int { return strings.Count(g.log.String(), `"msg":"reloaded"`) }

	var actions []string
	for cp := 0; cp <= checkpoints; cp++ {
		if cp > 0 {
			actions = actions[:0]
			// Some stretches hold the file watch off: console changes
			// then bring in the command line's.
			var stopTouching func()
			if rng.IntN(2) == 0 {
				stopTouching = touchNowAndThen(gws[0].dir)
			}
			for range 4 + rng.IntN(5) {
				n := names[rng.IntN(len(names))]
				u := model[n]
				var what string
				switch k := rng.IntN(7); {
				case k == 0 && u.exists:
					pw := newPassword(n)
					cli(pw+"\n", "user", "passwd", n, "--password-stdin")
					changed(n, pw, true)
					what = "cli passwd"
				case k == 1 && u.exists:
					cli("", "user", "del", n)
					changed(n, "", false)
					what = "cli del"
				case k == 1 || (k == 0 && !u.exists):
					pw := newPassword(n)
					cli(pw+"\n", "user", "add", n, "--password-stdin")
					changed(n, pw, true)
					what = "cli add"
				case k == 2 && u.exists:
					pw := newPassword(n)
					console(fmt.Sprintf("ALTER USER %s PASSWORD '%s'", n, pw))
					changed(n, pw, true)
					what = "ALTER USER"
				case k == 3 && u.exists:
					console("DROP USER " + n)
					changed(n, "", false)
					what = "DROP USER"
				case k == 2 || k == 3:
					pw := newPassword(n)
					console(fmt.Sprintf("CREATE USER %s PASSWORD '%s'", n, pw))
					changed(n, pw, true)
					what = "CREATE USER"
				case k == 4 && u.exists:
					// A first secret revokes nothing; a later one is not
					// made here (the secret exists).
					console("CREATE TOKEN " + n)
					what = "CREATE TOKEN"
				default:
					// The web console's password form, from a console
					// session still in force for n.
					var ws *webSession
					for _, s := range webs {
						if s.user == n && s.gen == u.gen && u.exists {
							ws = s
						}
					}
					if ws == nil {
						continue
					}
					pw := newPassword(n)
					r := ws.cc.post("/password", url.Values{"csrf": {ws.csrf}, "current_password": {u.password}, "new_password": {pw}, "new_password2": {pw}}, nil)
					if r.status != 303 {
						t.Fatalf("%v: %s's console password change: %d\n%s", actions, n, r.status, r.body)
					}
					changed(n, pw, true)
					what = "console password"
				}
				actions = append(actions, what+" "+n)
			}
			if stopTouching != nil {
				stopTouching()
			}
			// Every change is in force once a reload that began after the
			// last one has finished: the watch's (300 ms after the last
			// write), then a SIGHUP's.
			time.Sleep(400 * time.Millisecond)
			for _, g := range gws {
				before := reloads(g)
				g.signal(syscall.SIGHUP)
				waitFor(t, 10*time.Second, "the checkpoint's reload", func() bool { return reloads(g) > before })
			}
			t.Logf("checkpoint %d after %q", cp, actions)
		}

		alive := func(s *wireSession) bool { return model[s.user].exists && model[s.user].gen == s.gen }
		var kept []*wireSession
		for _, s := range wires {
			if alive(s) {
				if _, err := s.c.Exec(context.Background(), "SELECT 1"); err != nil {
					t.Fatalf("%v: a wire session of %s (change %d) ended though nothing revoked it: %v", actions, s.user, s.gen, err)
				}
				kept = append(kept, s)
				continue
			}
			waitFor(t, 5*time.Second, fmt.Sprintf("%v: the wire session of %s from before change %d ends", actions, s.user, model[s.user].gen), func() bool {
				_, err := s.c.Exec(context.Background(), "SELECT 1")
				return err != nil
			})
			s.c.Close(context.Background())
		}
		wires = kept
		var keptWeb []*webSession
		for _, s := range webs {
			// Console sessions are shared through the store: any
			// instance must hold or refuse them alike.
			s.cc.base = some().httpURL()
			s.cc.origin = s.cc.base
			status, _, _ := s.cc.sql("postgres", "SELECT 1", s.csrf, nil)
			switch live := model[s.user].exists && model[s.user].gen == s.gen; {
			case live && status != 200:
				t.Fatalf("%v: a console session of %s (change %d) ended though nothing revoked it: %d", actions, s.user, s.gen, status)
			case !live && status != 401:
				t.Fatalf("%v: a console session of %s from before change %d still works: %d", actions, s.user, model[s.user].gen, status)
			case live:
				keptWeb = append(keptWeb, s)
			}
		}
		webs = keptWeb
		// Basic credentials are cached once verified: each checkpoint
		// sends the passwords in force, the next one the same again.
		basic := func(g *gateway, n, pw string) int {
			status, body, err := postSQL(context.Background(), http.DefaultClient, g.httpURL()+"/_sql", map[string]any{"stmt": "SELECT 1"}, basicAuth(n, pw))
			if err != nil || (status != 200 && status != 401) {
				t.Fatalf("%v: a Basic request of %s: %d %v\n%s", actions, n, status, err, body)
			}
			return status
		}
		for _, n := range names {
			u := model[n]
			for _, g := range gws {
				for _, pw := range u.old {
					if g.logsIn(n, pw) || basic(g, n, pw) != 401 {
						t.Fatalf("%v: %s still logs in with a revoked password at %s", actions, n, g.addr())
					}
				}
				if !u.exists && basic(g, n, "") != 401 {
					t.Fatalf("%v: %s, removed, got in at %s", actions, n, g.addr())
				}
				if u.exists && basic(g, n, u.password) != 200 {
					t.Fatalf("%v: %s's Basic request with the password in force at %s failed", actions, n, g.addr())
				}
			}
			u.old = nil
			if !u.exists {
				continue
			}
			g := some()
			c, err := g.connect(n, u.password, "postgres")
			if err != nil {
				t.Fatalf("%v: %s does not log in with the password in force at %s: %v", actions, n, g.addr(), err)
			}
			wires = append(wires, &wireSession{user: n, gen: u.gen, c: c})
			if rng.IntN(2) == 0 {
				cc := newConsoleClient(t, some().httpURL(), nil)
				webs = append(webs, &webSession{user: n, gen: u.gen, cc: cc, csrf: cc.login(n, u.password)})
			}
		}
	}
}

// touchNowAndThen writes a file in dir every 20 ms until the returned
// function is called: the file watch, which reloads after 300 ms without
// a change in a watched folder, then does not reload.
func touchNowAndThen(dir string) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			os.WriteFile(filepath.Join(dir, "touched"), []byte(strconv.Itoa(i)), 0o600)
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

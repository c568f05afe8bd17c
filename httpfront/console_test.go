package httpfront

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/snapshot"
)

// testConsole is a server with one user, alice, holding one session.
type testConsole struct {
	s    *Server
	snap *snapshot.Snapshot
	id   string
	sess Session
}

func newTestConsole(t testing.TB) *testConsole {
	t.Helper()
	alice := &authcore.User{Name: "alice", Password: "stored-hash"}
	users, err := authcore.NewUsers([]*authcore.User{alice})
	if err != nil {
		t.Fatal(err)
	}
	snap := &snapshot.Snapshot{Config: config.Default(), Users: users,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.2/32")}}
	s := New(Options{State: snapshot.NewHolder("", snap, nil), Log: zap.NewNop(), Audit: zap.NewNop()})
	id, sess := s.sessions.Create(alice, time.Now())
	return &testConsole{s: s, snap: snap, id: id, sess: sess}
}

func TestTheConsoleNeedsHTTPSOffTheMachine(t *testing.T) {
	tc := newTestConsole(t)
	for _, c := range []struct {
		peer, proto string
		tls         bool
		secure, ok  bool
		xff         string
	}{
		{"127.0.0.1:5000", "", false, false, true, ""},
		{"[::1]:5000", "", false, false, true, ""},
		{"[::ffff:127.0.0.1]:5000", "", false, false, true, ""},
		{"192.0.2.7:5000", "", false, false, false, ""},
		{"192.0.2.7:5000", "", true, true, true, ""},
		// X-Forwarded-Proto counts from a trusted proxy only.
		{"10.1.2.3:5000", "https", false, true, true, ""},
		{"10.1.2.3:5000", "http", false, false, false, ""},
		{"10.1.2.3:5000", "httpſ", false, false, false, ""}, // ASCII case folding only
		{"192.0.2.7:5000", "https", false, false, false, ""},
		{"127.0.0.1:5000", "https", false, false, true, ""},
		{"not an address", "", false, false, false, ""},
		// Through a trusted proxy on loopback, the forwarded client and
		// scheme count, not the proxy's own loopback address.
		{"127.0.0.2:5000", "http", false, false, false, "198.51.100.9"},
		{"127.0.0.2:5000", "", false, false, false, "198.51.100.9"},
		{"127.0.0.2:5000", "https", false, true, true, "198.51.100.9"},
		{"127.0.0.2:5000", "http", false, false, true, "127.0.0.1"},
		{"127.0.0.2:5000", "", false, false, true, ""},
		// A proxy that forwards the scheme but names no client, or no
		// address, may speak for anyone: not the loopback exception.
		{"127.0.0.2:5000", "http", false, false, false, ""},
		{"127.0.0.2:5000", "http", false, false, false, "unknown"},
		{"127.0.0.2:5000", "http", false, false, false, "198.51.100.9:4711"},
		{"127.0.0.2:5000", "http", false, false, true, "127.0.0.1:4711"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		if c.proto != "" {
			r.Header.Set("X-Forwarded-Proto", c.proto)
		}
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		r.TLS = nil
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		}
		tr, err := consoleTransport(r, tc.snap)
		if (err == nil) != c.ok || tr.secure != c.secure {
			t.Errorf("%+v: secure %v, err %v", c, tr.secure, err)
		}
	}
}

func TestTheOriginCheckAcceptsOnlyTheServersOwnOrigin(t *testing.T) {
	for _, c := range []struct {
		origin, referer, site string
		secure, ok            bool
	}{
		{"http://db.local:8432", "", "same-origin", false, true},
		{"http://DB.local:8432", "", "", false, true},
		{"https://db.local:8432", "", "", true, true},
		{"https://db.local:8432", "", "", false, false},
		{"http://db.local:8432", "", "", true, false},
		{"http://db.local", "", "", false, false},
		{"http://db.local:8432.evil.example", "", "", false, false},
		{"null", "", "", false, false},
		{"", "http://db.local:8432/", "", false, true},
		{"", "http://evil.example/db.local:8432", "", false, false},
		{"", "not a url", "", false, false},
		{"", "", "", false, false},
		{"http://db.local:8432", "", "same-site", false, false},
		{"http://db.local:8432", "", "cross-site", false, false},
		{"http://db.local:8432", "", "none", false, false},
	} {
		r := httptest.NewRequest("POST", "http://db.local:8432/login", nil)
		for h, v := range map[string]string{"Origin": c.origin, "Referer": c.referer, "Sec-Fetch-Site": c.site} {
			if v != "" {
				r.Header.Set(h, v)
			}
		}
		if err := checkSameOrigin(r, transport{secure: c.secure}); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

func TestPreLoginTokensAreBoundToTheLoginCookieAndPurpose(t *testing.T) {
	tc := newTestConsole(t)
	nonce := NewOpaqueID()
	token := tc.s.loginToken("login", nonce)
	req := func(cookie string) *http.Request {
		r := httptest.NewRequest("POST", "/login", nil)
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: loginCookiePlain, Value: cookie})
		}
		return r
	}
	if !tc.s.checkLoginToken(req(nonce), transport{}, "login", token) {
		t.Fatal("the right token refused")
	}
	for why, ok := range map[string]bool{
		"no cookie":         tc.s.checkLoginToken(req(""), transport{}, "login", token),
		"another cookie":    tc.s.checkLoginToken(req(NewOpaqueID()), transport{}, "login", token),
		"another purpose":   tc.s.checkLoginToken(req(nonce), transport{}, "setup", token),
		"no token":          tc.s.checkLoginToken(req(nonce), transport{}, "login", ""),
		"HTTPS cookie name": tc.s.checkLoginToken(req(nonce), transport{secure: true}, "login", token),
		"another process":   New(Options{State: tc.s.o.State, Log: zap.NewNop()}).checkLoginToken(req(nonce), transport{}, "login", token),
	} {
		if ok {
			t.Errorf("token accepted with %s", why)
		}
	}
}

func TestAShadowingCookieDoesNotHideTheRealSession(t *testing.T) {
	tc := newTestConsole(t)
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", sessionCookiePlain+"="+NewOpaqueID()+"; "+sessionCookiePlain+"="+tc.id)
	id, sess, ok, sent := tc.s.currentSession(r, tc.snap, transport{})
	if !ok || !sent || id != tc.id || sess.User != "alice" {
		t.Fatalf("session %q %+v ok=%v sent=%v", id, sess, ok, sent)
	}
}

// FuzzSessionCookie: whatever Cookie and X-CSRF-Token headers arrive, a
// session is found only for a cookie holding its exact id, and a call is
// authenticated only with its exact CSRF token; nothing panics.
func FuzzSessionCookie(f *testing.F) {
	tc := newTestConsole(f)
	for _, s := range []string{
		sessionCookiePlain + "=" + tc.id,
		sessionCookiePlain + "=" + tc.id + "; " + sessionCookiePlain + "=x",
		sessionCookiePlain + `="` + tc.id + `"`,
		sessionCookiePlain + "=" + strings.ToLower(tc.id),
		sessionCookiePlain + "=" + tc.id[:20],
		sessionCookieTLS + "=" + tc.id,
		"; ;=;" + sessionCookiePlain, strings.Repeat(sessionCookiePlain+"=a;", 300), "\xff\x00=\x01",
	} {
		f.Add(s, tc.sess.CSRF)
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, cookie, csrf string) {
		r := httptest.NewRequest("POST", "http://127.0.0.1:8432/_sql", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("Cookie", cookie)
		r.Header.Set("Origin", "http://127.0.0.1:8432")
		r.Header.Set(csrfHeader, csrf)
		_, sess, ok, _ := tc.s.currentSession(r, tc.snap, transport{})
		holds := false
		for _, c := range r.CookiesNamed(sessionCookiePlain) {
			holds = holds || c.Value == tc.id
		}
		if ok != holds || (ok && sess.User != "alice") {
			t.Fatalf("cookie %q found session %v, holds the id: %v", cookie, ok, holds)
		}
		creds := &credentials{}
		if f := tc.s.sessionCredentials(r, tc.snap, creds); f == nil && creds.session != nil && (!holds || csrf != tc.sess.CSRF) {
			t.Fatalf("cookie %q with CSRF %q authenticated", cookie, csrf)
		}
		if holds && csrf == tc.sess.CSRF && creds.session == nil {
			t.Fatalf("the real cookie and token were refused")
		}
	})
}

// A form that names a field twice is refused: pgwarden read the first,
// a proxy or log may read the last.
func TestAFormThatNamesAFieldTwiceIsRefused(t *testing.T) {
	for body, ok := range map[string]bool{
		"user=alice&password=p&csrf=x":           true,
		"user=alice&user=root&password=p&csrf=x": false,
		"user=alice&password=p&csrf=x&csrf=y":    false,
		"user=alice&password=p;user=root":        false,
	} {
		r := httptest.NewRequest("POST", "http://127.0.0.1:8432/login", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if _, err := readForm(httptest.NewRecorder(), r); (err == nil) != ok {
			t.Errorf("%s: %v", body, err)
		}
	}
}

// FuzzConsoleForm: any form post (body, Content-Type, Origin, Referer) is
// read within its bound or refused, and passes the origin check only when
// it names the server's own origin.
func FuzzConsoleForm(f *testing.F) {
	for _, s := range [][4]string{
		{"csrf=x&user=alice&password=p", "application/x-www-form-urlencoded", "http://127.0.0.1:8432", ""},
		{"user=%zz&&&=", "application/x-www-form-urlencoded; charset=utf-8", "", "http://127.0.0.1:8432/"},
		{"csrf=x", "text/plain", "null", ""},
		{"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--b--", "multipart/form-data; boundary=b", "http://evil.example", ""},
		{strings.Repeat("a=b&", 5000), "application/x-www-form-urlencoded", "", "//127.0.0.1:8432/x"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, body, ctype, origin, referer string) {
		r := httptest.NewRequest("POST", "http://127.0.0.1:8432/login", strings.NewReader(body))
		r.Header.Set("Content-Type", ctype)
		r.Header.Set("Origin", origin)
		r.Header.Set("Referer", referer)
		w := httptest.NewRecorder()
		form, err := readForm(w, r)
		if err == nil && len(body) > maxFormBytes {
			t.Fatalf("a %d-byte body was read (%d fields)", len(body), len(form))
		}
		for k, v := range form {
			if len(v) != 1 {
				t.Fatalf("field %q read with %d values", k, len(v))
			}
		}
		if checkSameOrigin(r, transport{}) == nil {
			got := r.Header.Get("Origin")
			if got == "" {
				got = r.Referer()
			}
			if !strings.HasPrefix(strings.ToLower(got), "http://127.0.0.1:8432") {
				t.Fatalf("origin %q referer %q passed", origin, referer)
			}
		}
	})
}

package httpfront

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/snapshot"
)

// FuzzAuthorizationHeader: any Authorization header is either credentials
// or a refusal, never a panic.
func FuzzAuthorizationHeader(f *testing.F) {
	for _, s := range []string{"Basic YWxpY2U6cHc=", "Basic !!!", "Bearer a.b.c", "Basic OnB3", "Digest x", "Bearer " + strings.Repeat(".", 9000)} {
		f.Add(s)
	}
	snap := &snapshot.Snapshot{}
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("POST", "/_sql", nil)
		r.Header.Set("Authorization", h)
		c, fail := readCredentials(r, snap, nil)
		if (c == nil) == (fail == nil) {
			t.Fatalf("credentials %v and failure %v", c, fail)
		}
		if c != nil && c.basic && c.user == "" {
			t.Fatal("Basic credentials without a user")
		}
	})
}

// FuzzSQLBody: any body is decoded within the limit or refused.
func FuzzSQLBody(f *testing.F) {
	for _, s := range []string{`{"stmt":"SELECT 1","args":[1,2.5,"x",null,{"a":[1]}]}`, `{"transaction":[{"stmt":"x"}]}`,
		`{"bulk_args":[[1],[2]],"stmt":"x"}`, strings.Repeat("[", 5000), `{"stmt":"\xff"}`, `{}{}`,
		`{"stmt":"a","STMT":"b"}`, `{"\u0073tmt":"a","stmt":"b"}`, `{"stmt":"x","args":[{"a":1,"a":2}]}`,
		`{"stmt":"x","args":["\ud800"]}`, `{"stmt":"x","args":["\\ud800\ud83d\ude00"]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if len(body) > 8192 {
			return // the limit below is 4096; larger inputs only slow the fuzzer
		}
		r := httptest.NewRequest("POST", "/_sql", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var req sqlRequest
		w := httptest.NewRecorder()
		var asked int64
		e := decodeBody(w, r, 4096, &req, func(n int64) bool { asked = max(asked, n); return true }, 1<<40)
		if e != nil && e.status != http.StatusBadRequest && e.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d", e.status)
		}
		if e != nil {
			return
		}
		// The room asked for before decoding counted every value the
		// body holds (countJSONValues bounds them from above).
		values := 0
		dec := json.NewDecoder(strings.NewReader(body))
		for {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			if d, ok := tok.(json.Delim); ok && (d == ']' || d == '}') {
				continue
			}
			values++
		}
		if n := countJSONValues([]byte(body)); n < values-countJSONKeys(body) {
			t.Fatalf("%d values counted in a body of %d", n, values-countJSONKeys(body))
		}
		if need := decodedBytes([]byte(body)); need > freeBodyBytes && asked < need {
			t.Fatalf("room asked %d, need %d", asked, need)
		}
		// Arguments convert without a panic; an object keeps its text.
		read := []string{req.Stmt}
		all := append([]rawArgs{req.Args}, req.BulkArgs...)
		for _, st := range req.Transaction {
			all = append(all, st.Args)
			read = append(read, st.Stmt)
		}
		for _, args := range all {
			for i, v := range jsonArgs(args) {
				if o, ok := v.(argObject); ok && !json.Valid([]byte(o)) {
					t.Fatalf("args[%d]: object %q is not JSON", i, o)
				}
				read = append(read, fmt.Sprint(v))
			}
		}
		// Nothing was replaced: a U+FFFD in what was read was written as
		// one (or as \ufffd), never made from a lone surrogate escape.
		if strings.ContainsRune(strings.Join(read, ""), utf8.RuneError) &&
			!strings.ContainsRune(body, utf8.RuneError) && !strings.Contains(strings.ToLower(body), `\ufffd`) {
			t.Fatalf("U+FFFD read from a body that has none: %q", body)
		}
	})
}

// countJSONKeys counts the object keys of a valid JSON text, which
// json.Decoder.Token gives as strings like values.
func countJSONKeys(body string) int {
	var n int
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			n += len(x)
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	var v any
	if json.Unmarshal([]byte(body), &v) == nil {
		walk(v)
	}
	return n
}

// FuzzForwardedAndHost: the client address is the peer unless the peer is
// a trusted proxy, and then one of the X-Forwarded-For entries, or unknown
// when an entry is no address (never a panic on any header); and a Host is let through only when it names
// localhost, a loopback address, a listener or an allowed host, compared
// as DNS compares names (ASCII case only).
func FuzzForwardedAndHost(f *testing.F) {
	for _, s := range []struct{ peer, xff, host string }{
		{"10.0.0.1:5000", "192.0.2.1, 10.0.0.2", "localhost:8080"},
		{"192.0.2.7:1", "10.0.0.9", "LOCALHOST."},
		{"[::ffff:10.0.0.1]:2", "fe80::1%eth0,  ,x", "[::1]:8080"},
		{"10.0.0.1:5000", "", "localhoſt"},
		{"10.0.0.1:5000", "10.0.0.3,10.0.0.4", "db.example.com."},
		{"10.0.0.1:5000", "192.0.2.1:4711, [2001:db8::1]:80", "localhost"},
		{"10.0.0.1:5000", "[2001:db8::1], unknown", "localhost"},
	} {
		f.Add(s.peer, s.xff, s.host)
	}
	cfg := config.Default()
	cfg.Server.HTTPListen = []string{"127.0.0.1:8080"}
	cfg.HTTP.AllowedHosts = []string{"db.example.com"}
	snap := &snapshot.Snapshot{Config: cfg, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	f.Fuzz(func(t *testing.T, peer, xff, host string) {
		r := httptest.NewRequest("GET", "/healthz", nil)
		r.RemoteAddr = peer
		r.Header.Set("X-Forwarded-For", xff)
		got := clientAddr(r, snap)
		ap, err := netip.ParseAddrPort(peer)
		switch {
		case err != nil:
			if got.IsValid() {
				t.Fatalf("peer %q does not parse, yet the client is %v", peer, got)
			}
		case !snap.TrustedProxy(ap.Addr().Unmap()):
			if got != ap.Addr().Unmap() {
				t.Fatalf("untrusted peer %v: client %v", ap, got)
			}
		case !got.IsValid():
			// Unknown: only when a hop the walk reached is no address.
			bad := false
			for _, h := range strings.Split(xff, ",") {
				if _, ok := forwardedHop(strings.TrimSpace(h)); !ok {
					bad = true
				}
			}
			if !bad {
				t.Fatalf("client unknown, yet every hop of X-Forwarded-For %q is an address", xff)
			}
		case got != ap.Addr().Unmap():
			found := false
			for _, h := range strings.Split(xff, ",") {
				if a, ok := forwardedHop(strings.TrimSpace(h)); ok && a == got {
					found = true
				}
			}
			if !found {
				t.Fatalf("client %v is neither the peer nor in X-Forwarded-For %q", got, xff)
			}
		}
		if !hostAllowed(cfg, host) {
			return
		}
		name := host
		if h, _, err := net.SplitHostPort(name); err == nil {
			name = h
		}
		name = strings.ToLower(strings.TrimSuffix(strings.Trim(name, "[]"), "."))
		if ip, err := netip.ParseAddr(name); err == nil && (ip.IsLoopback() || ip.Unmap() == netip.MustParseAddr("127.0.0.1")) {
			return
		}
		if host != "" && name != "localhost" && name != "db.example.com" && name != "127.0.0.1" {
			t.Fatalf("Host %q let through", host)
		}
	})
}

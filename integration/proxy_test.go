package integration

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/pires/go-proxyproto"
)

const proxyRules = `
[[hba]]
address = "10.0.0.0/8"
method = "trust"

[[hba]]
method = "reject"
`

func proxyHeader(t *testing.T, version byte, src string) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(version, &net.TCPAddr{IP: net.ParseIP(src), Port: 50000}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 6432})
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPROXYHeadersFromATrustedProxy(t *testing.T) {
	g := startGatewayServer(t, "proxy_protocol = \"optional\"\ntrusted_proxies = [\"127.0.0.1/32\"]", proxyRules, nil)
	for _, v := range []byte{1, 2} {
		r := dialRaw(t, g.addr())
		r.write(append(proxyHeader(t, v, "10.1.2.3"), startupBytes(3, 0, "user", "alice", "database", "postgres")...))
		if _, ok := r.receive().(*pgproto3.AuthenticationOk); !ok {
			t.Fatalf("PROXY v%d: the HBA did not see 10.1.2.3", v)
		}
	}
	g.waitLog(`"address":"10.1.2.3"`, 2)
	// Optional: a trusted proxy may also connect without a header.
	r := dialRaw(t, g.addr())
	r.write(startupBytes(3, 0, "user", "alice", "database", "postgres"))
	r.expectError("28000", `HBA rejects connection for host "127.0.0.1", user "alice", database "postgres", SSL off`)
}

func TestPROXYHeadersFromAnUntrustedAddressAreNotBelieved(t *testing.T) {
	g := startGatewayServer(t, "proxy_protocol = \"optional\"\ntrusted_proxies = [\"192.0.2.0/24\"]", proxyRules, nil)
	r := dialRaw(t, g.addr())
	r.write(append(proxyHeader(t, 2, "10.1.2.3"), startupBytes(3, 0, "user", "alice", "database", "postgres")...))
	r.expectError("08P01", "invalid length of startup packet")

	req := startGatewayServer(t, "proxy_protocol = \"required\"\ntrusted_proxies = [\"192.0.2.0/24\"]", proxyRules, nil)
	r2 := dialRaw(t, req.addr())
	r2.write(append(proxyHeader(t, 1, "10.1.2.3"), startupBytes(3, 0, "user", "alice")...))
	r2.expectClosed()
}

func TestRequiredPROXYHeaderIsRequired(t *testing.T) {
	g := startGatewayServer(t, "proxy_protocol = \"required\"\ntrusted_proxies = [\"127.0.0.0/8\"]", proxyRules, nil)
	r := dialRaw(t, g.addr())
	r.write(startupBytes(3, 0, "user", "alice", "database", "postgres"))
	r.expectClosed()
}

func TestXForwardedForOnlyFromTrustedProxies(t *testing.T) {
	rules := `
[[hba]]
protocol = "http"
address = "10.0.0.0/8"
method = "trust"

[[hba]]
method = "reject"
`
	trustedGW := startGatewayWith(t, gwOptions{http: true, server: `trusted_proxies = ["127.0.0.1/32"]`, httpSection: `default_user = "alice"`}, rules, nil)
	url := trustedGW.httpURL() + "/_sql?db=postgres"
	if s, _, out := httpDo(t, "POST", url, `{"stmt":"SELECT 1"}`, map[string]string{"X-Forwarded-For": "203.0.113.9, 10.9.9.9"}); s != 200 {
		t.Fatalf("XFF from a trusted proxy: %d %v", s, out)
	}
	if s, _, _ := httpDo(t, "POST", url, `{"stmt":"SELECT 1"}`, nil); s != 403 {
		t.Fatalf("no XFF: %d", s)
	}
	// The right-most untrusted hop counts, not what the client prepended.
	if s, _, _ := httpDo(t, "POST", url, `{"stmt":"SELECT 1"}`, map[string]string{"X-Forwarded-For": "10.9.9.9, 203.0.113.9"}); s != 403 {
		t.Fatalf("spoofed left-most XFF believed: %d", s)
	}
	plain := startGatewayWith(t, gwOptions{http: true, httpSection: `default_user = "alice"`}, rules, nil)
	if s, _, _ := httpDo(t, "POST", plain.httpURL()+"/_sql?db=postgres", `{"stmt":"SELECT 1"}`, map[string]string{"X-Forwarded-For": "10.9.9.9"}); s != 403 {
		t.Fatalf("XFF from an untrusted peer believed: %d", s)
	}
}

// One source that keeps max_connections connections waiting to
// authenticate no longer locks everyone else out: another source's new
// connection takes the place of its oldest waiting one, while its own new
// connections are still refused 53300. Sources here are PROXY addresses.
func TestOneSourceHoldingEverySlotDoesNotLockOthersOut(t *testing.T) {
	g := startGatewayServer(t, "proxy_protocol = \"required\"\ntrusted_proxies = [\"127.0.0.1/32\"]\nmax_connections = 10\nauth_timeout = \"30s\"", proxyRules, nil)
	var stalled []*rawClient
	for i := 0; i < 10; i++ {
		r := dialRaw(t, g.addr())
		r.write(proxyHeader(t, 2, "10.9.9.9")) // and then nothing
		stalled = append(stalled, r)
	}
	// Until they are all waiting for their startup packets.
	time.Sleep(time.Second)

	own := dialRaw(t, g.addr())
	own.write(append(proxyHeader(t, 2, "10.9.9.9"), startupBytes(3, 0, "user", "alice", "database", "postgres")...))
	own.expectError("53300", "too many connections")

	other := dialRaw(t, g.addr())
	other.write(append(proxyHeader(t, 2, "10.1.2.3"), startupBytes(3, 0, "user", "alice", "database", "postgres")...))
	if m, ok := other.receive().(*pgproto3.AuthenticationOk); !ok {
		t.Fatalf("another source's client was not served: %#v", m)
	}
	// One stalled connection made room (the oldest, which
	// TestPendingConnsEvictTheOldestOfTheSourceHoldingTheMost checks); the
	// others still wait.
	closed := 0
	for _, r := range stalled {
		r.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		var b [1]byte
		if _, err := r.conn.Read(b[:]); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			closed++
		}
	}
	if closed != 1 {
		t.Fatalf("%d stalled connections were closed, want 1", closed)
	}
	g.waitLog("clients still authenticating were closed to make room", 1)
}

// A proxy that forwards a client without naming it (PROXY v1 UNKNOWN,
// an X-Forwarded-For hop that is no address) makes the client unknown: it
// matches only rules for every address, never those for the proxy's own.
// Before, such a client was taken for the proxy and got the trust rule
// below; a version 2 LOCAL header (the proxy's own health check) still is
// the proxy, and an address written with a port is read.
func TestAClientAProxyDoesNotNameIsNotTheProxy(t *testing.T) {
	const rules = `
[[hba]]
address = "127.0.0.1/32"
method = "trust"

[[hba]]
address = "203.0.113.0/24"
method = "trust"

[[hba]]
method = "reject"
`
	g := startGatewayServer(t, "proxy_protocol = \"optional\"\ntrusted_proxies = [\"127.0.0.1/32\"]", rules, nil)
	r := dialRaw(t, g.addr())
	r.write(append([]byte("PROXY UNKNOWN\r\n"), startupBytes(3, 0, "user", "alice", "database", "postgres")...))
	r.expectError("28000", `HBA rejects connection for host "unknown", user "alice", database "postgres", SSL off`)
	local, err := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}).Format()
	if err != nil {
		t.Fatal(err)
	}
	r = dialRaw(t, g.addr())
	r.write(append(local, startupBytes(3, 0, "user", "alice", "database", "postgres")...))
	if _, ok := r.receive().(*pgproto3.AuthenticationOk); !ok {
		t.Fatal("a LOCAL header was not taken for the proxy itself")
	}

	h := startGatewayWith(t, gwOptions{http: true, server: `trusted_proxies = ["127.0.0.1/32"]`, httpSection: `default_user = "alice"`}, rules, nil)
	url := h.httpURL() + "/_sql?db=postgres"
	for xff, want := range map[string]int{
		"unknown":              403,
		"203.0.113.9, bogus":   403,
		"10.9.9.9:4711":        403,
		"203.0.113.9:4711":     200,
		"[::ffff:203.0.113.9]": 200,
	} {
		if s, _, out := httpDo(t, "POST", url, `{"stmt":"SELECT 1"}`, map[string]string{"X-Forwarded-For": xff}); s != want {
			t.Errorf("X-Forwarded-For %q: %d %v, want %d", xff, s, out, want)
		}
	}
	h.waitLog(`"address":"unknown"`, 2)
}

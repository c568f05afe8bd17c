package httpfront

import (
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/snapshot"
)

// Behind a trusted proxy the client is the right-most forwarded address
// that is not a proxy, also as proxies write it with a port or in
// brackets; a hop that is no address makes the client unknown (the zero
// Addr, which only rules for every address match) instead of the proxy,
// whose own address rules may trust.
func TestAForwardedHopThatIsNoAddressMakesTheClientUnknown(t *testing.T) {
	snap := &snapshot.Snapshot{Config: config.Default(), TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	for _, c := range []struct {
		peer string
		xff  []string
		want string // "" for unknown
	}{
		{"192.0.2.1:5000", []string{"127.0.0.1"}, "192.0.2.1"}, // not a proxy: the header is not read
		{"127.0.0.1:5000", nil, "127.0.0.1"},                   // the proxy itself
		{"127.0.0.1:5000", []string{" , "}, "127.0.0.1"},       // says no more than no header
		{"127.0.0.1:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"127.0.0.1:5000", []string{"10.9.9.9, 203.0.113.9"}, "203.0.113.9"},
		{"127.0.0.1:5000", []string{"203.0.113.9", "127.0.0.5"}, "203.0.113.9"},
		{"127.0.0.1:5000", []string{"203.0.113.9:4711"}, "203.0.113.9"},
		{"127.0.0.1:5000", []string{"[2001:db8::7]:4711"}, "2001:db8::7"},
		{"127.0.0.1:5000", []string{"[2001:db8::7]"}, "2001:db8::7"},
		{"127.0.0.1:5000", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{"127.0.0.1:5000", []string{"127.0.0.3"}, "127.0.0.3"}, // every hop a proxy
		{"127.0.0.1:5000", []string{"unknown"}, ""},
		{"127.0.0.1:5000", []string{"203.0.113.9, unknown"}, ""},
		{"127.0.0.1:5000", []string{"203.0.113.9,"}, ""},
		{"127.0.0.1:5000", []string{"[203.0.113.9]"}, ""},
		{"127.0.0.1:5000", []string{"unknown, 127.0.0.4"}, ""},
		{"127.0.0.1:5000", []string{"garbage, 203.0.113.9"}, "203.0.113.9"}, // what the client sent is never reached
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		for _, h := range c.xff {
			r.Header.Add("X-Forwarded-For", h)
		}
		got := clientAddr(r, snap)
		want := netip.Addr{}
		if c.want != "" {
			want = netip.MustParseAddr(c.want)
		}
		if got != want {
			t.Errorf("peer %s, X-Forwarded-For %q: client %v, want %v", c.peer, c.xff, got, want)
		}
	}
	if got := addrText(netip.Addr{}); got != "unknown" {
		t.Errorf("an unknown client is written %q", got)
	}
}

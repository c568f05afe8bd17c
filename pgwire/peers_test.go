package pgwire

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/pgwarden/pgwarden/config"
)

// A forward is told from a client's request by where it comes from: the
// addresses of the [[peers]], a host name looked up.
func TestPeerSourcesAreThePeersAddresses(t *testing.T) {
	ips := peerIPs([]config.Peer{
		{ID: 2, Address: "10.0.0.2:6432"},
		{ID: 3, Address: "[2001:db8::3]:6432"},
		{ID: 4, Address: "[::ffff:10.0.0.4]:6432"},
		{ID: 5, Address: "localhost:6432"},
		{ID: 6, Address: "no port"},
	})
	for _, want := range []string{"10.0.0.2", "2001:db8::3", "10.0.0.4", "127.0.0.1"} {
		if !slices.Contains(ips, netip.MustParseAddr(want)) {
			t.Errorf("peer sources %v lack %s", ips, want)
		}
	}
	if slices.Contains(ips, netip.MustParseAddr("10.0.0.1")) {
		t.Errorf("peer sources %v hold an address no peer has", ips)
	}
}

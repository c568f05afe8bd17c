package pgwire

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
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

// A client of the unix socket counts as its OS user, for the cancel guard,
// making room at max_connections and the throttle: one local user's wrong
// cancel keys, crowd of connections or wrong passwords cannot shut out
// another's.
func TestAUnixSocketClientCountsAsItsOSUser(t *testing.T) {
	if !peerCredsSupported {
		t.Log("no SO_PEERCRED on this platform: the unix socket's clients are one source")
		return
	}
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c := &conn{srv: &Server{}, raw: raw, local: true, src: localSource(raw)}
	want := fmt.Sprintf("local:%d", os.Getuid())
	if got := c.source(); got != want {
		t.Fatalf("a unix socket client counts as %q, want %q", got, want)
	}
	if got := c.addrString(); got != want {
		t.Fatalf("a unix socket client is named %q in the logs and the throttle, want %q", got, want)
	}
	tcp := &conn{srv: &Server{}, addr: netip.MustParseAddr("192.0.2.7")}
	if got := tcp.source(); got != "192.0.2.7" {
		t.Fatalf("a TCP client counts as %q", got)
	}
}

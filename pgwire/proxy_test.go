package pgwire

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/pires/go-proxyproto"
)

// A PROXY header stands for the client it names; a version 2 LOCAL header
// for the proxy itself (its health check); any other (version 1's UNKNOWN,
// a client on one of the proxy's unix sockets) for an unknown client, never
// for the proxy, whose own address HBA rules may trust.
func TestAPROXYHeaderThatNamesNoClientMakesTheClientUnknown(t *testing.T) {
	proxy := netip.MustParseAddr("127.0.0.1")
	v1Unknown, err := proxyproto.Read(bufio.NewReader(strings.NewReader("PROXY UNKNOWN\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		h    *proxyproto.Header
		want netip.Addr
	}{
		{"v1 TCP4", proxyproto.HeaderProxyFromAddrs(1, &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 5}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 6432}), netip.MustParseAddr("10.1.2.3")},
		{"v2 TCP6", proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("2001:db8::5"), Port: 5}, &net.TCPAddr{IP: net.ParseIP("::1"), Port: 6432}), netip.MustParseAddr("2001:db8::5")},
		{"v2 v4-mapped", proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("::ffff:10.1.2.3"), Port: 5}, &net.TCPAddr{IP: net.ParseIP("::1"), Port: 6432}), netip.MustParseAddr("10.1.2.3")},
		{"v2 LOCAL", &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}, proxy},
		{"v1 UNKNOWN", v1Unknown, netip.Addr{}},
		{"v2 unix socket", proxyproto.HeaderProxyFromAddrs(2, &net.UnixAddr{Net: "unix", Name: "/run/haproxy.sock"}, &net.UnixAddr{Net: "unix", Name: "/run/pg.sock"}), netip.Addr{}},
	} {
		if got := proxyClient(c.h, proxy); got != c.want {
			t.Errorf("%s: client %v, want %v", c.name, got, c.want)
		}
	}
}

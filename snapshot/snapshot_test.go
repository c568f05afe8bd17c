package snapshot

import (
	"net/netip"
	"testing"
)

// A proxy reached over a link-local IPv6 address is seen with its zone
// (fe80::1%eth0), which netip never finds in a prefix: trusted_proxies =
// ["fe80::/10"] must still trust it. IPv4-mapped peers are their IPv4 form.
func TestATrustedProxyIsKnownWhateverItsZoneOrMapping(t *testing.T) {
	s := &Snapshot{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("fe80::/10"), netip.MustParsePrefix("10.0.0.0/8")}}
	for _, a := range []string{"fe80::1%eth0", "fe80::1", "::ffff:10.1.2.3", "10.1.2.3"} {
		if !s.TrustedProxy(netip.MustParseAddr(a)) {
			t.Errorf("%s is not trusted", a)
		}
	}
	for _, a := range []string{"2001:db8::1%eth0", "11.0.0.1", "::1"} {
		if s.TrustedProxy(netip.MustParseAddr(a)) {
			t.Errorf("%s is trusted", a)
		}
	}
}

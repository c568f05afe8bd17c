package config

import "testing"

// Every network pgwarden reads (HBA addresses, trusted_proxies) holds
// addresses. An IPv4-mapped address under a prefix shorter than 96 bits was
// unmapped before it was masked, which asked for a negative IPv4 length and
// made a prefix that contains nothing: a reject rule written so stopped no
// one, and a trusted proxy written so was never trusted.
func TestAMappedAddressNamesTheNetworkItsMaskMakes(t *testing.T) {
	for in, want := range map[string]string{
		"::ffff:127.0.0.1/8":  "::/8",
		"::ffff:0:0/80":       "::/80",
		"::ffff:0:0/95":       "::fffe:0:0/95",
		"::ffff:0:0/96":       "0.0.0.0/0",
		"::ffff:10.1.2.3/104": "10.0.0.0/8",
		"::ffff:10.1.2.3/128": "10.1.2.3/32",
		"::ffff:10.1.2.3":     "10.1.2.3/32",
		"10.1.2.3/8":          "10.0.0.0/8",
		"2001:db8::1/32":      "2001:db8::/32",
		"::1":                 "::1/128",
	} {
		p, err := ParsePrefix(in)
		if err != nil || !p.IsValid() || p.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
}

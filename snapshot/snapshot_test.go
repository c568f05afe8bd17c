package snapshot

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgwarden/pgwarden/authcore"
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

// A trust rule for every address is warned of where clients of other
// machines can reach it, and only there: loopback listeners without
// trusted proxies, a rule with an address list, or the unix socket alone
// raise nothing.
func TestTrustForEveryAddressReachableFromElsewhereIsWarnedOf(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.toml")
	if err := os.WriteFile(users, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	hbaFile := filepath.Join(dir, "pg_hba.conf")
	for _, c := range []struct {
		name, server, rules, hbaLines string
		want                          []string
	}{
		{"loopback listeners", `pg_listen = ["127.0.0.1:6432", "[::1]:6432"]` + "\nhttp_listen = [\"localhost:8432\"]", "[[hba]]\nmethod = \"trust\"\n", "", nil},
		{"every interface", `pg_listen = ["0.0.0.0:6432"]` + "\nhttp_listen = [\"127.0.0.1:8432\"]", "[[hba]]\nmethod = \"trust\"\n", "",
			[]string{`rule 1 (` + filepath.Join(dir, "config.toml") + `:6) is trust for every address, and clients of other machines reach it through server.pg_listen "0.0.0.0:6432": any of them logs in as whichever user it names, with no credential`}},
		{"HTTP only on every interface, the rule for the wire", `pg_listen = ["127.0.0.1:6432"]` + "\nhttp_listen = [\":8432\"]", "[[hba]]\nprotocol = \"pg\"\nmethod = \"trust\"\n", "", nil},
		{"an address list", `pg_listen = ["0.0.0.0:6432"]`, "[[hba]]\naddress = [\"10.0.0.0/8\"]\nmethod = \"trust\"\n", "", nil},
		{"a /0 prefix", `pg_listen = ["[::]:6432"]`, "[[hba]]\naddress = [\"::/0\"]\nmethod = \"trust\"\n", "", []string{"rule 1 ", `server.pg_listen "[::]:6432"`}},
		{"a password rule", `pg_listen = ["0.0.0.0:6432"]`, "[[hba]]\nmethod = \"scram-sha-256\"\n", "", nil},
		{"trusted proxies", `pg_listen = ["127.0.0.1:6432"]` + "\nhttp_listen = [\"127.0.0.1:8432\"]\ntrusted_proxies = [\"127.0.0.1/32\"]", "[[hba]]\nprotocol = \"http\"\nmethod = \"trust\"\n", "",
			[]string{"the proxies of server.trusted_proxies"}},
		{"pg_hba.conf lines", `pg_listen = ["0.0.0.0:6432"]`, "", "local all all trust\nhost all all 10.1.0.0/16 trust\nhost all all all trust\n",
			[]string{"rule 3 (" + hbaFile + ":3) is trust for every address"}},
		{"a hostgssenc line, which matches no one", `pg_listen = ["0.0.0.0:6432"]`, "", "hostgssenc all all all trust\nhostgssenc all all all password\nhost all all 127.0.0.1/32 scram-sha-256\n", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			top := ""
			if c.hbaLines != "" {
				if err := os.WriteFile(hbaFile, []byte(c.hbaLines), 0o600); err != nil {
					t.Fatal(err)
				}
				top = "hba_file = \"" + hbaFile + "\"\n"
			}
			conf := top + "[server]\n" + c.server + "\n[users]\nfile = \"" + users + "\"\n" + c.rules
			checkWarning(t, filepath.Join(dir, "config.toml"), conf, "is trust for every address", c.want)
		})
	}
}

// A rule under which clients of other machines send a password or a token
// without TLS is warned of: the wire's password and jwt methods, and any
// credential over plain HTTP. SCRAM on the wire, TLS required, loopback
// listeners or loopback-only rules raise nothing.
func TestCredentialsInClearTextFromElsewhereAreWarnedOf(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.toml")
	if err := os.WriteFile(users, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, server, rules string
		want                []string
	}{
		{"scram on the wire", `pg_listen = ["0.0.0.0:6432"]` + "\nhttp_listen = []", "[[hba]]\nmethod = \"scram-sha-256\"\n", nil},
		{"password on the wire", `pg_listen = ["0.0.0.0:6432"]` + "\nhttp_listen = []", "[[hba]]\nmethod = \"password\"\n",
			[]string{"rule 1 ", `the password message of method password (through server.pg_listen "0.0.0.0:6432")`}},
		{"jwt on the wire, loopback only", `pg_listen = ["127.0.0.1:6432", "[::1]:6432"]` + "\nhttp_listen = []", "[[hba]]\nmethod = \"jwt\"\n[tokens]\n", nil},
		{"a loopback rule on every interface", `pg_listen = ["0.0.0.0:6432"]` + "\nhttp_listen = [\"0.0.0.0:8432\"]",
			"[[hba]]\naddress = [\"127.0.0.1/32\", \"::1/128\", \"::ffff:127.0.0.1/128\", \"local\"]\nmethod = \"password\"\n", nil},
		{"a remote network", `pg_listen = ["0.0.0.0:6432"]` + "\nhttp_listen = []", "[[hba]]\naddress = [\"127.0.0.1/32\", \"192.0.2.0/24\"]\nmethod = \"password\"\n",
			[]string{"method password"}},
		{"Basic over plain HTTP", `pg_listen = ["127.0.0.1:6432"]` + "\nhttp_listen = [\":8432\"]", "[[hba]]\nmethod = \"scram-sha-256\"\n",
			[]string{`HTTP Basic passwords and bearer tokens (through server.http_listen ":8432", server.http_tls off)`}},
		{"Basic behind a TLS-terminating proxy", `pg_listen = ["127.0.0.1:6432"]` + "\nhttp_listen = [\":8432\"]\ntrusted_proxies = [\"10.0.0.5/32\"]", "[[hba]]\nmethod = \"scram-sha-256\"\n", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			conf := "[server]\n" + c.server + "\n[users]\nfile = \"" + users + "\"\n" + c.rules
			checkWarning(t, filepath.Join(dir, "config.toml"), conf, "takes credentials in clear text", c.want)
		})
	}
}

// checkWarning loads conf, written to cfg, and checks its warnings that
// contain marker: none when want is empty, else exactly one, holding every
// string of want.
func checkWarning(t *testing.T, cfg, conf, marker string, want []string) {
	t.Helper()
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(cfg, authcore.NewHashLimiter(0))
	if err != nil {
		t.Fatalf("%v\n%s", err, conf)
	}
	var found []string
	for _, w := range s.Warnings() {
		if strings.Contains(w, marker) {
			found = append(found, w)
		}
	}
	if len(want) == 0 {
		if len(found) != 0 {
			t.Fatalf("unexpected warning: %q", found)
		}
		return
	}
	if len(found) != 1 {
		t.Fatalf("want one warning with %q, got %q", marker, found)
	}
	for _, w := range want {
		if !strings.Contains(found[0], w) {
			t.Fatalf("the warning lacks %q: %s", w, found[0])
		}
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every kind of configuration mistake is reported as
// FILE:LINE: KEY: what is wrong; what to do.
func TestEveryConfigErrorSaysWhereAndWhatToDo(t *testing.T) {
	cases := []struct {
		name, config string
		want         []string // each a line of the report, in order
	}{
		{"unterminated table header", "[server]\nmax_connections = 5\n\n[[hba]]\nmethod = \"trust\"\n\n[tls]\ncert_file = \"x\"\n[backend\nport = 5\n",
			[]string{`c.toml:9: backend: TOML syntax: the table header is not closed; write [backend]`}},
		{"unterminated array of tables", "[[hba]\nmethod = \"trust\"\n",
			[]string{`c.toml:1: hba: TOML syntax: the table header is not closed; write [[hba]]`}},
		{"unquoted string", "[backend]\nhost = db.example.com\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:2: host: TOML syntax: `}},
		{"number as string", "[backend]\nport = \"55433\"\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:2: backend.port: must be a number, not a string; write port = 55433 without quotes`}},
		{"bool as string", "[backend]\nreuse = \"false\"\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:2: backend.reuse: must be true or false, not a string; write reuse = false without quotes`}},
		{"string as number", "[backend]\nhost = 5\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:2: backend.host: must be a string, not the number 5; write host = "5"`}},
		// A secret's value is never in the report (it goes to the log at a
		// reload): not as a number, not as the part of a bare value the
		// decoder stopped at.
		{"secret as number", "[backend]\npassword = 31415926535\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:2: backend.password: must be a string, not a number; write password = "..." (the value is not shown: it is a secret)`}},
		{"unquoted secret", "[users]\nmock_auth_secret = hunter2-and-more\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:2: mock_auth_secret: TOML syntax: expected value but found "..." instead; strings are quoted ("..."), lists are [..., ...] (the value is not shown: it is a secret)`}},
		{"list as string", "[server]\npg_listen = \"127.0.0.1:6432\"\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:2: server.pg_listen: must be a list, not a string; write pg_listen = ["127.0.0.1:6432"]`}},
		{"bad duration", "[server]\nauth_timeout = \"10 parsecs\"\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:2: server.auth_timeout: `}},
		{"table as value", "server = 5\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:1: server: must be a table, not the number 5; write it as a [server] section`}},
		{"value in an array of tables", "[[hba]]\nmethod = \"trust\"\n[[hba]]\nmethod = 7\n",
			[]string{`c.toml:4: hba[2].method: must be a string, not the number 7; write method = "7"`}},
		{"unknown key near a known one", "[server]\npg_lisen = [\"127.0.0.1:1\"]\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:2: server.pg_lisen: unknown key; did you mean pg_listen?`}},
		{"unknown table near a known one", "[backnd]\nport = 5\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:1: backnd: unknown key; did you mean backend?`}},
		{"unknown key in a rule", "[[hba]]\nmethd = \"trust\"\n",
			[]string{`c.toml:2: hba.methd: unknown key; did you mean method?`}},
		{"a key in another case, beside the right one", "[[hba]]\nmethod = \"trust\"\nMethod = \"reject\"\n",
			[]string{`c.toml:3: hba[1].Method: unknown key; keys are case-sensitive: write method`}},
		{"a table in another case", "[Backend]\nport = 5\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:1: Backend: unknown key; keys are case-sensitive: write backend`}},
		{"unknown key far from any", "[server]\nfrobnicate = 1\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:2: server.frobnicate: unknown key; the keys are listed in docs/configuration.md`}},
		{"missing certificate", "[tls]\ncert_file = \"nowhere.crt\"\nkey_file = \"nowhere.key\"\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:2: tls.cert_file: cannot read ` + "DIR" + `/nowhere.crt: no such file or directory; make a CA and certificates with ` + "`pgwarden certs init --dir DIR`"}},
		{"revocation list without a client CA", "[tls]\ncert_file = \"nowhere.crt\"\nkey_file = \"nowhere.key\"\ncrl_file = \"ca.crl\"\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:2: tls.cert_file: `, `c.toml:4: tls.crl_file: needs client_ca_file: it lists revoked client certificates`}},
		{"IPv6 throttle prefix out of range", "[throttle]\nipv6_prefix = 16\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:2: throttle.ipv6_prefix: must be between 32 and 128 bits, not 16`}},
		{"result bound out of range", "[http]\nmax_result_bytes = 0\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:2: http.max_result_bytes: must be between 1 and 1073741824`}},
		{"requests' memory below one answer", "[http]\nmax_result_bytes = 1000\nmax_body_bytes = 100\nmax_request_memory = 3999\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:4: http.max_request_memory: must be 0 (the default: 268435456 with these settings) or at least 4000, not 3999: one source may take half of it, where an answer of http.max_result_bytes must fit, and a body of http.max_body_bytes takes twice its size from an eighth of it`}},
		{"requests' memory below one body", "[http]\nmax_body_bytes = 1000\nmax_result_bytes = 1000\nmax_request_memory = 16015\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:4: http.max_request_memory: must be 0 (the default: 268435456 with these settings) or at least 16016, not 16015: one source may take half of it, where an answer of http.max_result_bytes must fit, and a body of http.max_body_bytes takes twice its size from an eighth of it`}},
		{"backend database name PostgreSQL would cut", "[[databases]]\nname = \"app\"\nbackend_dbname = \"dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd\"\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:3: databases[1].backend_dbname: is 64 bytes; PostgreSQL keeps 63 and would connect to a database of its first 63`}},
		{"an entry named as the admin console", "[[databases]]\nname = \"pgwarden\"\nbackend_dbname = \"app\"\n[[hba]]\nmethod = \"trust\"\n",
			[]string{`c.toml:2: databases[1].name: "pgwarden" is server.admin_database: clients asking for it get the admin console, never this entry; rename one of them`}},
		{"missing HBA file", "hba_file = \"nowhere.conf\"\n",
			[]string{`c.toml:1: hba_file: cannot read DIR/nowhere.conf: no such file or directory; write it in pg_hba.conf form`}},
		{"everything at once", "[server]\nmax_connections = \"many\"\nbogus = 1\nproxy_protocol = \"sometimes\"\n[backend]\nport = \"x\"\n[[hba]]\nmethod = \"trust\"\n",
			[]string{
				`c.toml:2: server.max_connections: must be a whole number, not the string "many"`,
				`c.toml:3: server.bogus: unknown key`,
				`c.toml:4: server.proxy_protocol: must be off, optional or required, not "sometimes"`,
				`c.toml:6: backend.port: must be a whole number, not the string "x"`,
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Parse(filepath.Join(dir, "c.toml"), []byte(tc.config))
			if err == nil {
				t.Fatal("accepted")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) < len(tc.want) {
				t.Fatalf("want %d problems, got:\n%v", len(tc.want), err)
			}
			for i, w := range tc.want {
				w = strings.ReplaceAll(w, "DIR/", dir+"/")
				if !strings.HasPrefix(lines[i], filepath.Join(dir, w)) {
					t.Fatalf("problem %d:\n got %s\nwant %s...\nall:\n%v", i+1, lines[i], filepath.Join(dir, w), err)
				}
			}
		})
	}
}

func TestNoConfigurationFileSaysWhereItLookedAndWhatToDo(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(dir)
	t.Setenv("PGWARDEN_CONFIG", "")
	_, err := Load("config.toml")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"config.toml: no configuration file here (" + filepath.Join(dir, "config.toml"), "neither -c nor $PGWARDEN_CONFIG", "-c FILE", "config.toml.example"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("%q lacks %q", err, want)
		}
	}
	_, err = Load(filepath.Join(dir, "other.toml"))
	if !strings.Contains(err.Error(), "given with -c") {
		t.Fatalf("%q does not say the path came from -c", err)
	}
}

func TestAValueOfTheWrongTypeDoesNotHideTheRestOfTheFile(t *testing.T) {
	// The right values around a wrong one are still read: an empty [tls]
	// is still a [tls] (and says what it lacks), [tokens] still counts.
	c, err := Parse("/x/c.toml", []byte("[backend]\nport = \"5\"\nhost = \"db\"\n[tokens]\n[[hba]]\nmethod = \"trust\"\n"))
	if err == nil || c == nil {
		t.Fatalf("want the partial config and an error, got %v %v", c, err)
	}
	if c.Backend.Host != "db" || !c.TokensSet || len(c.HBA) != 1 {
		t.Fatalf("the rest of the file was lost: %+v", c)
	}
	if _, err := Parse("/x/c.toml", []byte("[tls]\n[[hba]]\nmethod = \"trust\"\n")); err == nil || !strings.Contains(err.Error(), "tls: cert_file and key_file are required") {
		t.Fatalf("empty [tls]: %v", err)
	}
}

func TestPeerListsAreChecked(t *testing.T) {
	cases := []struct{ config, want string }{
		{"[server]\npeer_id = 1\n[[peers]]\nid = 1\naddress = \"10.0.0.2:6432\"\n[[hba]]\nmethod = \"trust\"\n", "peers[1].id: 1 is this instance's own server.peer_id"},
		{"[[peers]]\nid = 2\naddress = \"10.0.0.2:6432\"\n[[hba]]\nmethod = \"trust\"\n", "server.peer_id: [[peers]] are listed but this instance has no peer_id"},
		{"[server]\npeer_id = 1\n[[peers]]\nid = 2\naddress = \"a:1\"\n[[peers]]\nid = 2\naddress = \"b:1\"\n[[hba]]\nmethod = \"trust\"\n", "peers[2].id: peer id 2 is listed twice"},
		{"[server]\npeer_id = 1024\n[[hba]]\nmethod = \"trust\"\n", "server.peer_id: must be 0 (no peers) to 1023, not 1024"},
		{"[server]\nevent_loops = -1\n[[hba]]\nmethod = \"trust\"\n", "server.event_loops: must be 0 (half the cores) to 256, not -1"},
		{"[server]\nevent_loops = 257\n[[hba]]\nmethod = \"trust\"\n", "server.event_loops: must be 0 (half the cores) to 256, not 257"},
		{"[server]\npeer_id = 1\n[[peers]]\nid = 2\naddress = \"10.0.0.2\"\n[[hba]]\nmethod = \"trust\"\n", "peers[1].address: must be host:port"},
		// Addresses that lead back to this instance, or to one instance
		// under two ids: a cancel request forwarded there comes back.
		{"[server]\npg_listen = [\"127.0.0.1:6432\"]\npeer_id = 1\n[[peers]]\nid = 2\naddress = \"127.0.0.1:6432\"\n[[hba]]\nmethod = \"trust\"\n", "peers[1].address: 127.0.0.1:6432 is this instance's own pg_listen 127.0.0.1:6432"},
		{"[server]\npg_listen = [\"10.0.0.1:7000\", \"0.0.0.0:6432\"]\npeer_id = 1\n[[peers]]\nid = 2\naddress = \"127.0.0.1:6432\"\n[[hba]]\nmethod = \"trust\"\n", "this instance's own pg_listen 0.0.0.0:6432"},
		{"[server]\npg_listen = [\"[::]:6432\"]\npeer_id = 1\n[[peers]]\nid = 2\naddress = \"localhost:6432\"\n[[hba]]\nmethod = \"trust\"\n", "this instance's own pg_listen [::]:6432"},
		{"[server]\npg_listen = [\"[::1]:6432\"]\npeer_id = 1\n[[peers]]\nid = 2\naddress = \"localhost:6432\"\n[[hba]]\nmethod = \"trust\"\n", "this instance's own pg_listen [::1]:6432"},
		{"[server]\npeer_id = 1\n[[peers]]\nid = 2\naddress = \"lb:6432\"\n[[peers]]\nid = 3\naddress = \"lb:6432\"\n[[hba]]\nmethod = \"trust\"\n", "peers[2].address: lb:6432 is also the address of peers[1]"},
	}
	for _, tc := range cases {
		_, err := Parse("/x/c.toml", []byte(tc.config))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.config, err, tc.want)
		}
	}
	for _, good := range []string{
		"[server]\npeer_id = 1\n[[peers]]\nid = 2\naddress = \"10.0.0.2:6432\"\n[[hba]]\nmethod = \"trust\"\n",
		// Two instances on one machine, each on a loopback address or
		// port of its own.
		"[server]\npg_listen = [\"127.0.0.1:6432\"]\npeer_id = 1\n[[peers]]\nid = 2\naddress = \"127.0.0.2:6432\"\n[[hba]]\nmethod = \"trust\"\n",
		"[server]\npg_listen = [\"0.0.0.0:6432\"]\npeer_id = 1\n[[peers]]\nid = 2\naddress = \"127.0.0.1:6433\"\n[[hba]]\nmethod = \"trust\"\n",
	} {
		if _, err := Parse("/x/c.toml", []byte(good)); err != nil && !strings.Contains(err.Error(), "users.file") {
			t.Fatalf("a good peer list refused: %v", err)
		}
	}
}

// A backend at one of pgwarden's own listeners made every login log in to
// pgwarden again, nesting until max_backend_connections stopped it.
func TestABackendThatIsThisInstanceIsALoadError(t *testing.T) {
	const tail = "\n[[hba]]\nmethod = \"trust\"\n"
	for _, tc := range []struct{ config, want string }{
		{"[server]\npg_listen = [\"127.0.0.1:6432\"]\n[backend]\nport = 6432" + tail, "backend.port: 127.0.0.1 port 6432 is this instance's own listener 127.0.0.1:6432"},
		{"[server]\npg_listen = [\"0.0.0.0:5432\"]\n[backend]\nhost = \"localhost\"" + tail, "backend.port: localhost port 5432 is this instance's own listener 0.0.0.0:5432"},
		{"[server]\npg_listen = [\"127.0.0.1:6432\"]\nunix_socket_dir = \"/run/pgwarden\"\n[backend]\nhost = \"/run/pgwarden/\"\nport = 6432" + tail, "backend.port: /run/pgwarden/ port 6432 is this instance's own listener /run/pgwarden/.s.PGSQL.6432"},
		{"[server]\npg_listen = [\"127.0.0.1:6432\"]\n[[databases]]\nname = \"app\"\nport = 6432" + tail, "databases[1].port: 127.0.0.1 port 6432 is this instance's own listener"},
		{"[server]\npg_listen = [\"127.0.0.1:6432\"]\n[store]\nkind = \"postgres\"\ndatabase = \"s\"\nuser = \"s\"\nport = 6432" + tail, "store.port: 127.0.0.1 port 6432 is this instance's own listener"},
	} {
		_, err := Parse("/x/c.toml", []byte(tc.config))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.config, err, tc.want)
		}
	}
	for _, good := range []string{
		"[server]\npg_listen = [\"127.0.0.1:6432\"]\n[backend]\nport = 5432" + tail,
		"[server]\npg_listen = [\"127.0.0.1:6432\"]\nunix_socket_dir = \"/run/pgwarden\"\n[backend]\nhost = \"/var/run/postgresql\"\nport = 6432" + tail,
		"[server]\npg_listen = [\"10.0.0.1:5432\"]\n[backend]\nhost = \"10.0.0.2\"" + tail,
	} {
		if _, err := Parse("/x/c.toml", []byte(good)); err != nil && !strings.Contains(err.Error(), "users.file") {
			t.Errorf("%q refused: %v", good, err)
		}
	}
}

// bind refused a socket path over 107 bytes only when serve started, after
// pgwarden check had said OK.
func TestAUnixSocketPathTooLongForTheKernelIsALoadError(t *testing.T) {
	long := "/tmp/" + strings.Repeat("d", 100)
	for _, listen := range []string{"127.0.0.1:6432", "127.0.0.1:0"} {
		_, err := Parse("/x/c.toml", []byte("[server]\npg_listen = [\""+listen+"\"]\nunix_socket_dir = \""+long+"\"\n[[hba]]\nmethod = \"trust\"\n"))
		if err == nil || !strings.Contains(err.Error(), "server.unix_socket_dir: the socket path "+long+"/.s.PGSQL.") || !strings.Contains(err.Error(), "over the 107") {
			t.Fatalf("%s: %v", listen, err)
		}
	}
	// With reuse_port a new process binds the path plus ".new" first.
	dir104 := "/tmp/" + strings.Repeat("d", 104-len("/tmp/")-len("/.s.PGSQL.6432"))
	_, err := Parse("/x/c.toml", []byte("[server]\npg_listen = [\"127.0.0.1:6432\"]\nreuse_port = true\nunix_socket_dir = \""+dir104+"\"\n[[hba]]\nmethod = \"trust\"\n"))
	if err == nil || !strings.Contains(err.Error(), "with reuse_port a new process binds "+dir104+"/.s.PGSQL.6432.new") {
		t.Fatalf("reuse_port, 104-byte socket path: %v", err)
	}
	if _, err := Parse("/x/c.toml", []byte("[server]\npg_listen = [\"127.0.0.1:6432\"]\nunix_socket_dir = \""+dir104+"\"\n[[hba]]\nmethod = \"trust\"\n")); err != nil && strings.Contains(err.Error(), "unix_socket_dir") {
		t.Fatalf("without reuse_port a 104-byte socket path fits: %v", err)
	}
	// 107 bytes exactly is fine.
	dir := "/tmp/" + strings.Repeat("d", 107-len("/tmp/")-len("/.s.PGSQL.6432"))
	if _, err := Parse("/x/c.toml", []byte("[server]\npg_listen = [\"127.0.0.1:6432\"]\nunix_socket_dir = \""+dir+"\"\n[[hba]]\nmethod = \"trust\"\n")); err != nil {
		t.Fatalf("a 107-byte path: %v", err)
	}
}

// http.max_request_memory unset is 256 MiB, or more where one answer at
// max_result_bytes or one body at max_body_bytes needs it; set, it is
// what it says.
func TestTheAnswersMemoryDefaultHoldsOneAnswerAtItsBound(t *testing.T) {
	for _, c := range []struct{ bytes, body, memory, want int64 }{
		{32 << 20, 1 << 20, 0, 256 << 20},
		{100 << 20, 1 << 20, 0, 800 << 20},
		{32 << 20, 16 << 20, 0, 2 * 16 * (16<<20 + 1)},
		{32 << 20, 1 << 20, 64 << 20, 64 << 20},
	} {
		h := HTTP{MaxResultBytes: c.bytes, MaxBodyBytes: c.body, MaxRequestMemory: c.memory}
		if got := h.RequestMemory(); got != c.want {
			t.Fatalf("max_result_bytes %d, max_request_memory %d: %d, want %d", c.bytes, c.memory, got, c.want)
		}
	}
}

package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pgwarden/pgwarden/authcore"
)

// runCLI runs the pgwarden binary and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(cliBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestCheckPrintsTheRuleTable(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users.toml"), "")
	cfg := filepath.Join(dir, "config.toml")
	writeFile(t, cfg, `
[[hba]]
protocol = "pg"
address = ["127.0.0.1/32", "::1/128"]
user = ["+admins", "/^svc_"]
method = "password"

[[hba]]
method = "reject"
`)
	out, errOut, code := runCLI(t, "", "check", "-c", cfg)
	if code != 0 {
		t.Fatalf("check exited %d: %s", code, errOut)
	}
	for _, want := range []string{"#  protocol", "127.0.0.1/32,::1/128", "+admins,/^svc_", "password", cfg + ":2", "OK (2 rules, 0 users)"} {
		if !strings.Contains(out, want) {
			t.Fatalf("check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "warning") {
		t.Fatalf("a warning for private files:\n%s", out)
	}
	// A users file every user may read: a warning; one every user may
	// write: an error.
	users := filepath.Join(dir, "users.toml")
	os.Chmod(users, 0o644)
	if out, _, code := runCLI(t, "", "check", "-c", cfg); code != 0 || !strings.Contains(out, "warning: users.file "+users+" is readable by every user of this machine") {
		t.Fatalf("check of a users file every user may read: %d\n%s", code, out)
	}
	os.Chmod(users, 0o666)
	if _, errOut, code := runCLI(t, "", "check", "-c", cfg); code == 0 || !strings.Contains(errOut, users+" is writable by every user of this machine") {
		t.Fatalf("check of a users file every user may write: %d\n%s", code, errOut)
	}
}

func TestCheckNamesTheFileLineAndKeyOfEveryProblem(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users.toml"), "")
	cases := []struct{ name, config, want string }{
		{"unknown key", "[server]\npg_lisen = [\"127.0.0.1:1\"]\n[[hba]]\nmethod = \"trust\"\n", `config.toml:2: server.pg_lisen: unknown key`},
		{"bad duration", "[server]\nauth_timeout = \"10 parsecs\"\n[[hba]]\nmethod = \"trust\"\n", `config.toml:2`},
		{"bad CIDR", "[[hba]]\nmethod = \"trust\"\n\n[[hba]]\naddress = [\"10.1.2.3/33\"]\nmethod = \"trust\"\n", `config.toml:4: hba[2].address: address "10.1.2.3/33" is not a CIDR`},
		{"missing file", "hba_file = \"nowhere.conf\"\n", `config.toml:1: hba_file: cannot read`},
		{"TLS rule without [tls]", "[[hba]]\nmethod = \"cert\"\n", `hba[1].method: method cert needs a [tls] section`},
		{"ssl on without [tls]", "[[hba]]\nssl = \"on\"\nmethod = \"password\"\n", `hba[1].ssl: ssl = "on" needs a [tls] section`},
		{"no rules", "[server]\nmax_connections = 5\n", `hba: there are no HBA rules`},
		{"unknown method", "[[hba]]\nmethod = \"ident\"\n", `config.toml:1: hba[1].method: unknown method "ident"`},
		{"bad listener", "[server]\npg_listen = [\"localhost\"]\n[[hba]]\nmethod = \"trust\"\n", `config.toml:2: server.pg_listen: listener "localhost"`},
		{"peer over http", "[[hba]]\nprotocol = \"http\"\naddress = \"local\"\nmethod = \"peer\"\n", `method peer is not allowed for protocol http`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "config.toml")
			writeFile(t, cfg, tc.config)
			_, errOut, code := runCLI(t, "", "check", "-c", cfg)
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("want exit 1 and %q, got %d:\n%s", tc.want, code, errOut)
			}
		})
	}
	_, _, code := runCLI(t, "", "check", "--bogus")
	if code != 2 {
		t.Fatalf("bad usage exited %d, want 2", code)
	}
}

func TestExplainSaysWhichRuleMatchesAndWhyOthersDoNot(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users.toml"), "[[user]]\nname = \"ops1\"\nroles = [\"ops\"]\n")
	cfg := filepath.Join(dir, "config.toml")
	writeFile(t, cfg, `
[[hba]]
protocol = "http"
method = "password"

[[hba]]
address = "10.0.0.0/8"
method = "trust"

[[hba]]
user = "+ops"
database = ["app"]
method = "scram-sha-256"
`)
	out, errOut, code := runCLI(t, "", "explain", "-c", cfg, "--protocol", "pg", "--user", "ops1", "--database", "app", "--address", "127.0.0.1")
	if code != 0 {
		t.Fatalf("explain exited %d: %s", code, errOut)
	}
	for _, want := range []string{
		"rule 1 (" + cfg + ":2): no match: protocol is pg, not http",
		"rule 2 (" + cfg + ":6): no match: address 127.0.0.1 is not in 10.0.0.0/8",
		"rule 3 (" + cfg + ":10): match",
		"method: scram-sha-256",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("explain output lacks %q:\n%s", want, out)
		}
	}
	out, _, _ = runCLI(t, "", "explain", "-c", cfg, "--user", "bob", "--database", "app", "--address", "local")
	if !strings.Contains(out, "no rule matches") || !strings.Contains(out, "method: reject") {
		t.Fatalf("explain for no match:\n%s", out)
	}
	// A name the users file lacks: its roles are PostgreSQL's, which
	// explain cannot read; --roles says which to assume, and it says so.
	out, _, _ = runCLI(t, "", "explain", "-c", cfg, "--user", "bob", "--database", "app", "--address", "local", "--roles", "ops")
	if !strings.Contains(out, "note: bob is not in the users file, and +role or samerole entries may decide: it holds no role but its own") ||
		!strings.Contains(out, "roles taken here: bob, ops") || !strings.Contains(out, "rule 3 ("+cfg+":10): match") {
		t.Fatalf("explain with --roles:\n%s", out)
	}
	// check warns that, without [auth_query], such a name holds no role
	// here whatever PostgreSQL says (the trust rule lets such names in).
	out, errOut, code = runCLI(t, "", "check", "-c", cfg)
	if code != 0 || !strings.Contains(out, "warning: rule 3 ("+cfg+":10) matches users by role (+role or samerole)") {
		t.Fatalf("check: %d\n%s%s", code, out, errOut)
	}
}

func TestHashPasswordWritesEveryFormatFromStdin(t *testing.T) {
	for algo, prefix := range map[string]string{"": "SCRAM-SHA-256$4096:", "scram-sha-256": "SCRAM-SHA-256$4096:",
		"bcrypt": "$2a$10$", "pbkdf2-sha512": "$pbkdf2-sha512$", "argon2id": "$argon2id$v=19$"} {
		args := []string{"hash-password"}
		if algo != "" {
			args = append(args, "--algo", algo)
		}
		out, errOut, code := runCLI(t, "correct horse battery\n", args...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", algo, code, errOut)
		}
		h := strings.TrimSpace(out)
		if !strings.HasPrefix(h, prefix) {
			t.Fatalf("%s: %q lacks prefix %q", algo, h, prefix)
		}
		parsed, err := authcore.ParseHash(h)
		if err != nil || !parsed.Verify("correct horse battery") || parsed.Verify("correct horse") {
			t.Fatalf("%s: hash does not verify: %v", algo, err)
		}
	}
	_, errOut, code := runCLI(t, "", "hash-password")
	if code != 1 || !strings.Contains(errOut, "no password") {
		t.Fatalf("empty stdin: %d %s", code, errOut)
	}
}

// TestPgBouncerHBAVectors loads PgBouncer's hba_test.rules as hba_file and
// checks `pgwarden explain` against every line of hba_test.eval.
func TestPgBouncerHBAVectors(t *testing.T) {
	// Copied into the repository with their origin and licence
	// (testdata/pgbouncer-hba/README.md); a missing file fails.
	vecDir := filepath.Join("testdata", "pgbouncer-hba")
	if _, err := os.Stat(filepath.Join(vecDir, "hba_test.eval")); err != nil {
		t.Fatalf("conformance vectors missing: %v", err)
	}
	rules, _ := filepath.Abs(filepath.Join(vecDir, "hba_test.rules"))
	dir := t.TempDir()
	out, errOut, code := runCLI(t, "", "certs", "init", "--dir", dir)
	if code != 0 {
		t.Fatalf("certs init: %s %s", out, errOut)
	}
	writeFile(t, filepath.Join(dir, "users.toml"), "")
	cfg := filepath.Join(dir, "config.toml")
	writeFile(t, cfg, fmt.Sprintf(`hba_file = %q

[tls]
cert_file = "server.crt"
key_file = "server.key"
client_ca_file = "ca.crt"
`, rules))
	f, err := os.Open(filepath.Join(vecDir, "hba_test.eval"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	methodRE := regexp.MustCompile(`(?m)^method: (\S+)$`)
	sc := bufio.NewScanner(f)
	n, lineNo := 0, 0
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		// TAB-separated: a field may hold spaces ("a , b").
		var fields []string
		for _, f := range strings.Split(line, "\t") {
			if f != "" {
				fields = append(fields, f)
			}
		}
		if len(fields) < 4 {
			t.Fatalf("hba_test.eval:%d: malformed line %q", lineNo, line)
		}
		want, db, user, addr := fields[0], fields[1], fields[2], fields[3]
		args := []string{"explain", "-c", cfg, "--protocol", "pg", "--database", db, "--user", user}
		if addr == "unix" {
			args = append(args, "--address", "local")
		} else {
			args = append(args, "--address", addr)
		}
		for _, mod := range fields[4:] {
			switch mod {
			case "tls":
				args = append(args, "--ssl")
			case "replication":
				args = append(args, "--replication")
			default:
				t.Fatalf("hba_test.eval:%d: unknown modifier %q", lineNo, mod)
			}
		}
		out, errOut, code := runCLI(t, "", args...)
		if code != 0 {
			t.Fatalf("hba_test.eval:%d: explain exited %d: %s", lineNo, code, errOut)
		}
		m := methodRE.FindStringSubmatch(out)
		if m == nil || m[1] != want {
			t.Errorf("hba_test.eval:%d %q: want %s, explain said:\n%s", lineNo, line, want, out)
		}
		n++
	}
	if n < 50 {
		t.Fatalf("only %d vectors read", n)
	}
	t.Logf("%d PgBouncer HBA vectors pass", n)
}

func TestCheckCountsInTheSingularAndThePlural(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users.toml"), usersTOML(t, []testUser{{name: "alice", password: "alice-Pass-1"}}))
	cfg := filepath.Join(dir, "config.toml")
	writeFile(t, cfg, "[[hba]]\nmethod = \"password\"\n")
	out, errOut, code := runCLI(t, "", "check", "-c", cfg)
	if code != 0 || !strings.Contains(out, "OK (1 rule, 1 user)") {
		t.Fatalf("check: %d %s %s", code, out, errOut)
	}
}

func TestHelpIsEverywhereAndExitsZero(t *testing.T) {
	cases := [][]string{
		{"-h"}, {"--help"}, {"help"},
		{"serve", "--help"}, {"check", "-h"}, {"explain", "--help"}, {"hash-password", "--help"},
		{"user", "--help"}, {"user", "add", "--help"}, {"user", "passwd", "-h"}, {"user", "del", "--help"}, {"user", "list", "--help"},
		{"token", "create", "--help"}, {"certs", "init", "--help"}, {"help", "user", "add"}, {"help", "check"},
	}
	for _, args := range cases {
		out, errOut, code := runCLI(t, "", args...)
		if code != 0 {
			t.Fatalf("%v exited %d: %s", args, code, errOut)
		}
		for _, want := range []string{"Usage:", "Examples:", "pgwarden", "-h, --help"} {
			if !strings.Contains(out, want) {
				t.Fatalf("%v: help lacks %q:\n%s", args, want, out)
			}
		}
	}
	// Every flag a command has is in its help.
	out, _, _ := runCLI(t, "", "user", "add", "--help")
	for _, flag := range []string{"--admin", "--backend-user", "--password-stdin", "--algo", "-c, --config"} {
		if !strings.Contains(out, flag) {
			t.Fatalf("user add --help lacks %s:\n%s", flag, out)
		}
	}
	// user --help needs no configuration file.
	if out, errOut, code := runCLI(t, "", "user", "--help"); code != 0 || strings.Contains(out+errOut, "no such file") {
		t.Fatalf("user --help: %d %s %s", code, out, errOut)
	}
}

func TestVersionSaysVersionCommitAndGo(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, errOut, code := runCLI(t, "", args...)
		if code != 0 {
			t.Fatalf("%v exited %d: %s", args, code, errOut)
		}
		if !regexp.MustCompile(`^pgwarden \S+ \(commit \S+, go1\.\d+`).MatchString(out) {
			t.Fatalf("%v printed %q", args, out)
		}
	}
}

func TestUsageMistakesExitTwoAndSuggest(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"chek"}, `unknown command "chek"; did you mean "check"?`},
		{[]string{"user", "ad", "bob"}, `unknown command "ad"; did you mean "add"?`},
		{[]string{"user"}, `user needs a command: add, del, list, passwd`},
		{[]string{"check", "--bogus"}, `unknown flag: --bogus`},
		{[]string{"user", "add"}, `pgwarden user add needs one user NAME`},
		{[]string{"token", "create"}, `token create needs --user`},
	}
	for _, tc := range cases {
		_, errOut, code := runCLI(t, "", tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "--help") {
			t.Fatalf("%v: want exit 2 and %q, got %d:\n%s", tc.args, tc.want, code, errOut)
		}
	}
}

func TestCompletionAndManPagesComeFromTheCommandDefinitions(t *testing.T) {
	for shell, want := range map[string]string{"bash": "__start_pgwarden", "zsh": "#compdef pgwarden", "fish": "complete -c pgwarden"} {
		out, errOut, code := runCLI(t, "", "completion", shell)
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("completion %s: exit %d, lacks %q: %s", shell, code, want, errOut)
		}
	}
	dir := t.TempDir()
	if _, errOut, code := runCLI(t, "", "man", "--dir", dir); code != 0 {
		t.Fatalf("man: exit %d: %s", code, errOut)
	}
	for _, page := range []string{"pgwarden.1", "pgwarden-serve.1", "pgwarden-user-add.1", "pgwarden-token-create.1", "pgwarden-certs-init.1"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), ".TH \"PGWARDEN\"") {
			t.Fatalf("%s is not a man page:\n%s", page, b)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "pgwarden-user-add.1"))
	if !strings.Contains(string(b), "backend-user") {
		t.Fatalf("pgwarden-user-add.1 lacks its flags:\n%s", b)
	}
}

func TestCheckReportsEveryProblemOfConfigUsersAndRulesInOneRun(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	writeFile(t, cfg, "[server]\nbogus = 1\n[backend]\nport = \"55433\"\n[users]\nfile = \"nope.toml\"\n[[hba]]\nmethod = \"trusst\"\n")
	_, errOut, code := runCLI(t, "", "check", "-c", cfg)
	if code != 1 {
		t.Fatalf("check exited %d: %s", code, errOut)
	}
	for _, want := range []string{
		cfg + ":2: server.bogus: unknown key",
		cfg + ":4: backend.port: must be a number, not a string; write port = 55433 without quotes",
		cfg + ":6: users.file: cannot read " + filepath.Join(dir, "nope.toml") + ": no such file or directory; create it with `pgwarden user add NAME -c " + cfg + "`",
		cfg + `:7: hba[1].method: unknown method "trusst"; did you mean trust?`,
	} {
		if !strings.Contains(errOut, want) {
			t.Fatalf("check output lacks %q:\n%s", want, errOut)
		}
	}
	// The fix it names works: user add makes the missing users file.
	writeFile(t, cfg, "[users]\nfile = \"nope.toml\"\n[[hba]]\nmethod = \"trust\"\n")
	if _, errOut, code := runCLI(t, "s3cret-Pass-1\n", "user", "add", "zed", "--password-stdin", "-c", cfg); code != 0 {
		t.Fatalf("user add: %d %s", code, errOut)
	}
	if _, errOut, code := runCLI(t, "", "check", "-c", cfg); code != 0 {
		t.Fatalf("check after user add: %d %s", code, errOut)
	}
	// No configuration at all: where it looked, -c, the example.
	cmd := exec.Command(cliBin, "check")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "PGWARDEN_CONFIG=")
	out, _ := cmd.CombinedOutput()
	for _, want := range []string{"no configuration file here", "-c FILE", "config.toml.example"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("no config: %s lacks %q", out, want)
		}
	}
}

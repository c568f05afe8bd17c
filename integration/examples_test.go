package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestTheClientExamplesRun runs docs/examples in Go, Python, JavaScript and Java
// against a gateway with TLS, tokens, a password rule for HTTP and a SCRAM
// rule for the wire. Each must print its three results.
func TestTheClientExamplesRun(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, filepath.Join(dir, "certs"))
	g := &gateway{t: t, dir: dir, port: freePortPair(), sockDir: dir, log: &lockedBuffer{}, done: make(chan struct{}), opts: gwOptions{http: true, httpSection: "default_database = \"postgres\""}}
	g.writeConfig(tlsSection + `
[tokens]

[[hba]]
protocol = "http"
method = "password"

[[hba]]
protocol = "pg"
ssl = "on"
method = "scram-sha-256"
`)
	g.writeUsers([]testUser{{name: "alice", password: "alice-Pass-1"}})
	g.start()
	env := append(os.Environ(),
		"PGWARDEN_URL="+g.httpURL(),
		"PGWARDEN_PGPORT="+strconv.Itoa(g.port),
		"PGWARDEN_CA="+p.path("ca.crt"),
		"PGWARDEN_USER=alice",
		"PGWARDEN_PASSWORD=alice-Pass-1",
	)
	want := []string{"http basic: [[alice 42]]", "http bearer: [[alice]]", "wire tls scram: alice"}
	wantJS := []string{`http basic: [["alice",42]]`, `http bearer: [["alice"]]`, "wire tls scram: alice"}

	t.Run("go", func(t *testing.T) {
		cmd := exec.Command("go", "run", "../docs/examples/go")
		cmd.Env = env
		checkExample(t, cmd, want)
	})
	t.Run("python", func(t *testing.T) {
		py := pythonWithPsycopg2(t)
		cmd := exec.Command(py, "../docs/examples/python/example.py")
		cmd.Env = env
		checkExample(t, cmd, []string{"http basic: [['alice', 42]]", "http bearer: [['alice']]", "wire tls scram: alice"})
	})
	t.Run("javascript", func(t *testing.T) {
		if _, err := exec.LookPath("node"); err != nil {
			missingTool(t, "node (18 or later) and npm")
		}
		js := "../docs/examples/js"
		if _, err := os.Stat(filepath.Join(js, "node_modules", "pg")); err != nil {
			if out, err := exec.Command("npm", "ci", "--prefix", js, "--no-audit", "--no-fund").CombinedOutput(); err != nil {
				t.Fatalf("npm ci in docs/examples/js: %v\n%s", err, out)
			}
		}
		cmd := exec.Command("node", "example.mjs")
		cmd.Dir = js
		cmd.Env = env
		checkExample(t, cmd, wantJS)
	})
	t.Run("java", func(t *testing.T) {
		jar := pgjdbcJar(t)
		cmd := exec.Command("java", "-cp", jar, "../docs/examples/java/Example.java")
		cmd.Env = env
		checkExample(t, cmd, []string{`http basic: [["alice",42]]`, `http bearer: [["alice"]]`, "wire tls scram: alice",
			"wire prepared: 110", "wire error: 22012", "wire cancel: 57014"})
	})
}

// pgjdbcJar finds the PostgreSQL JDBC driver of Debian's
// libpostgresql-jdbc-java, and a JDK that runs a source file.
func pgjdbcJar(t *testing.T) string {
	t.Helper()
	const jar = "/usr/share/java/postgresql.jar"
	_, err := os.Stat(jar)
	if _, jerr := exec.LookPath("javac"); err != nil || jerr != nil {
		missingTool(t, "a JDK (11 or later) and pgjdbc (Debian: apt-get install default-jdk-headless libpostgresql-jdbc-java)")
	}
	return jar
}

func checkExample(t *testing.T, cmd *exec.Cmd, want []string) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Fatalf("%v printed\n%s\nwithout %q", cmd.Args, out, w)
		}
	}
}

// missingTool fails in CI, where .ci/run installs every tool, and skips on
// a developer's machine that lacks one.
func missingTool(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is needed (CI installs it)", what)
	}
	t.Skipf("%s not found: this example is run in CI", what)
}

// pythonWithPsycopg2 finds a Python that can import psycopg2 (pyenv's
// first, then Debian's, where python3-psycopg2 installs it).
func pythonWithPsycopg2(t *testing.T) string {
	t.Helper()
	for _, c := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(c, "-c", "import psycopg2").Run() == nil {
			return c
		}
	}
	missingTool(t, "python3 with psycopg2 (Debian: apt-get install python3-psycopg2)")
	return ""
}

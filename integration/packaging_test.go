package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestTheSystemdUnitIsValidAndRunsWhatTheCLIHas checks packaging/pgwarden.service
// with systemd-analyze verify (unknown or misspelled directives, bad
// values), and that the commands it runs are ones the binary accepts.
func TestTheSystemdUnitIsValidAndRunsWhatTheCLIHas(t *testing.T) {
	unit, err := os.ReadFile("../packaging/pgwarden.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "WatchdogSec=", "NoNewPrivileges=yes", "ProtectSystem=strict", "User=pgwarden"} {
		if !strings.Contains(string(unit), want) {
			t.Fatalf("the unit lacks %q", want)
		}
	}
	// Its commands, on a configuration that loads, are accepted.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users.toml"), "")
	cfg := filepath.Join(dir, "config.toml")
	writeFile(t, cfg, "[[hba]]\nmethod = \"trust\"\n")
	for _, m := range regexp.MustCompile(`(?m)^ExecStartPre=/usr/local/bin/pgwarden (.*)$`).FindAllStringSubmatch(string(unit), -1) {
		args := strings.Fields(strings.ReplaceAll(m[1], "/etc/pgwarden/config.toml", cfg))
		if _, errOut, code := runCLI(t, "", args...); code != 0 {
			t.Fatalf("ExecStartPre %v: exit %d: %s", args, code, errOut)
		}
	}
	if !regexp.MustCompile(`(?m)^ExecStart=/usr/local/bin/pgwarden serve -c /etc/pgwarden/config.toml$`).Match(unit) {
		t.Fatal("ExecStart is not pgwarden serve -c /etc/pgwarden/config.toml")
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		missingTool(t, "systemd-analyze (Debian: systemd)")
	}
	local := filepath.Join(dir, "pgwarden.service")
	writeFile(t, local, strings.ReplaceAll(string(unit), "/usr/local/bin/pgwarden", cliBin))
	out, _ := exec.Command(analyze, "verify", local).CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// The man page named in Documentation= is not installed here.
		if line == "" || strings.Contains(line, "man pgwarden(1)") {
			continue
		}
		t.Fatalf("systemd-analyze verify: %s", out)
	}
}

// The Dockerfile cannot be built in CI (no Docker daemon); what is checked
// here is what it promises: a static binary, a non-root user, the config
// mounted, and a HEALTHCHECK the binary can run (pgwarden probe on /readyz).
func TestTheDockerfileKeepsItsPromises(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{"CGO_ENABLED=0", "distroless/static", "USER 65532:65532", "VOLUME [\"/etc/pgwarden\"]",
		"PGWARDEN_CONFIG=/etc/pgwarden/config.toml", `HEALTHCHECK`, `"probe", "http://127.0.0.1:8432/readyz"`} {
		if !strings.Contains(df, want) {
			t.Fatalf("the Dockerfile lacks %q", want)
		}
	}
	if !strings.Contains(df, "FROM golang:1.26") {
		t.Fatal("the build stage's Go is not go.mod's 1.26")
	}
	// The health check command works: 0 for a ready gateway, 1 otherwise.
	g := startGatewayWith(t, gwOptions{http: true}, "[[hba]]\nmethod = \"trust\"\n", nil)
	if out, errOut, code := runCLI(t, "", "probe", g.httpURL()+"/readyz"); code != 0 || !strings.Contains(out, "200") {
		t.Fatalf("probe of a ready gateway: %d %s %s", code, out, errOut)
	}
	if _, _, code := runCLI(t, "", "probe", g.httpURL()+"/nowhere"); code != 1 {
		t.Fatalf("probe of a 404 exited %d", code)
	}
	g.kill()
	if _, _, code := runCLI(t, "", "probe", g.httpURL()+"/readyz"); code != 1 {
		t.Fatalf("probe of a stopped gateway exited %d", code)
	}
}

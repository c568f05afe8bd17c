package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A file that decides who gets in, or its folder, that every user of the
// machine may change does not load: anyone could add an admin, a trust
// rule or a CA. One readable by all, holding secrets, loads with a warning.
func TestFilesEveryUserMayChangeAreRefused(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("users.toml", "", 0o600)
	cfgText := "[users]\nfile = \"users.toml\"\n[[hba]]\nmethod = \"trust\"\n"
	cfgPath := write("config.toml", cfgText, 0o600)
	load := func() error {
		_, err := Parse(cfgPath, []byte(cfgText))
		return err
	}
	if err := load(); err != nil {
		t.Fatalf("private files: %v", err)
	}
	os.Chmod(filepath.Join(dir, "users.toml"), 0o646)
	if err := load(); err == nil || !strings.Contains(err.Error(), "config.toml:2: users.file: ") || !strings.Contains(err.Error(), "users.toml is writable by every user of this machine") {
		t.Fatalf("a users file anyone may write: %v", err)
	}
	os.Chmod(filepath.Join(dir, "users.toml"), 0o644)
	if err := load(); err != nil {
		t.Fatalf("a users file anyone may read loads: %v", err)
	}
	cfg, _ := Parse(cfgPath, []byte(cfgText))
	if w := cfg.ReadableSecrets(); len(w) != 1 || !strings.Contains(w[0], "users.file") || !strings.Contains(w[0], "chmod o-r") {
		t.Fatalf("warnings for a users file anyone may read: %q", w)
	}
	// The configuration itself, once it holds a password.
	withPassword := cfgText + "[backend]\npassword = \"pw\"\n"
	os.Chmod(cfgPath, 0o644)
	cfg, _ = Parse(cfgPath, []byte(withPassword))
	if w := cfg.ReadableSecrets(); len(w) != 2 || !strings.Contains(w[0], "the configuration "+cfgPath) {
		t.Fatalf("warnings for a configuration with a password anyone may read: %q", w)
	}
	os.Chmod(cfgPath, 0o600)
	// A folder anyone may write, without the sticky bit, lets anyone put
	// another file in place of one pgwarden reads: said once.
	os.Chmod(filepath.Join(dir, "users.toml"), 0o600)
	os.Chmod(dir, 0o777)
	defer os.Chmod(dir, 0o700)
	err := load()
	if err == nil || strings.Count(err.Error(), "the folder "+dir+" is writable by every user") != 1 {
		t.Fatalf("a folder anyone may write: %v", err)
	}
	os.Chmod(dir, os.ModeSticky|0o777) // as /tmp: no one replaces another's file
	if err := load(); err != nil {
		t.Fatalf("a sticky folder: %v", err)
	}
}

func TestATrustedProxyRangeOfEveryAddressIsWarnedAbout(t *testing.T) {
	for _, tc := range []struct {
		proxies string
		warned  bool
	}{{`["10.0.0.5/32", "fd00::/8"]`, false}, {`["0.0.0.0/0"]`, true}, {`["::/0"]`, true}} {
		cfg, err := Parse("c.toml", []byte("[server]\ntrusted_proxies = "+tc.proxies+"\n[[hba]]\nmethod = \"trust\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		w := cfg.Warnings()
		if got := len(w) == 1 && strings.Contains(w[0], "every address"); got != tc.warned {
			t.Errorf("trusted_proxies = %s: warnings %q", tc.proxies, w)
		}
	}
}

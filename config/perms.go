package config

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// guardedFiles are the files that decide who gets in, by the key that
// names them ("" for the configuration itself).
func (c *Config) guardedFiles() map[string]string {
	files := map[string]string{"": c.Path, "hba_file": c.HBAFile,
		"backend.sslrootcert": c.Backend.SSLRootCert, "backend.sslcert": c.Backend.SSLCert, "backend.sslkey": c.Backend.SSLKey}
	if c.Store.Kind != "postgres" {
		files["users.file"] = c.Users.File
	}
	if t := c.TLS; t != nil {
		files["tls.cert_file"], files["tls.key_file"] = t.CertFile, t.KeyFile
		files["tls.client_ca_file"], files["tls.crl_file"] = t.ClientCAFile, t.CRLFile
	}
	return files
}

// checkWritableByAll refuses a file that decides who gets in, or the
// folder it is in, when every user of the machine may change it: anyone
// could add an admin to the users file, a trust rule, or a CA. A folder
// with the sticky bit (/tmp) lets no one replace another's file.
func (c *Config) checkWritableByAll(v *validator) {
	files := c.guardedFiles()
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	dirs := map[string]bool{}
	for _, key := range keys {
		p := files[key]
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil || readOnlyFS(p) {
			continue // reported where the file is read; or no one writes it
		}
		if fi.Mode().Perm()&0o002 != 0 {
			v.add(key, "%s is writable by every user of this machine, who could then change who gets in; chmod o-w %s", p, p)
		}
		dir := filepath.Dir(p)
		if di, err := os.Stat(dir); err == nil && !dirs[dir] && di.Mode().Perm()&0o002 != 0 && di.Mode()&fs.ModeSticky == 0 {
			dirs[dir] = true
			v.add(key, "the folder %s is writable by every user of this machine, who could put another file in place of %s; chmod o-w %s", dir, p, dir)
		}
	}
}

// ReadableSecrets says which files holding secrets every user of the
// machine may read: the users file (password hashes, and the token
// secrets that sign a user's tokens), private keys, and the configuration
// when it holds a password or secret. pgwarden serves
// anyway (a users file made with an editor is often 0644), but says so.
func (c *Config) ReadableSecrets() []string {
	files := map[string]string{"backend.sslkey": c.Backend.SSLKey}
	if c.Store.Kind != "postgres" {
		files["users.file"] = c.Users.File
	}
	if c.TLS != nil {
		files["tls.key_file"] = c.TLS.KeyFile
	}
	holdsSecret := c.Backend.Password != "" || c.Store.Password != "" || c.Users.MockAuthSecret != "" ||
		(c.AuthQuery != nil && c.AuthQuery.Password != "")
	if holdsSecret {
		files["the configuration"] = c.Path
	}
	var out []string
	for _, key := range []string{"the configuration", "users.file", "tls.key_file", "backend.sslkey"} {
		p := files[key]
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o004 != 0 {
			out = append(out, fmt.Sprintf("%s %s is readable by every user of this machine, secrets and all; chmod o-r %s", key, p, p))
		}
	}
	return out
}

// Warnings are what loads but should not stay so: files holding secrets
// that every user may read, and a trusted proxy range that covers every
// address (any client could then say which address HBA rules, the
// throttle and the audit log see, in a PROXY header or X-Forwarded-For).
func (c *Config) Warnings() []string {
	out := c.ReadableSecrets()
	for _, p := range c.Server.TrustedProxies {
		if pr, err := ParsePrefix(p); err == nil && pr.Bits() == 0 {
			out = append(out, fmt.Sprintf("server.trusted_proxies holds %s, every address: any client can choose the address that HBA rules and the throttle see (a PROXY header, X-Forwarded-For); list the balancers' addresses", p))
		}
	}
	return out
}

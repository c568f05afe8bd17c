package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Error is one problem in a configuration file, located by line and key.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found while loading; each prints on its own line.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

type validator struct {
	file  string
	lines keyLines
	errs  Errors
}

// maxResultBytesLimit is the largest http.max_result_bytes: a value of 1
// GiB is PostgreSQL's own largest field.
const maxResultBytesLimit = 1 << 30

var indexRE = regexp.MustCompile(`\.(\d+)(\.|$)`)

// add records a problem with key written as "hba.2.method" internally; the
// message shows it as "hba[3].method" (1-based, as users count blocks).
// maxSocketPath is the longest unix socket path the kernel takes: sun_path
// holds 108 bytes with the terminating zero.
const maxSocketPath = 107

func (v *validator) add(key, format string, args ...any) {
	line := v.lines.line(key)
	if line == 0 {
		line = v.lines.findUnindexed(key)
	}
	shown := indexRE.ReplaceAllStringFunc(key, func(m string) string {
		sub := indexRE.FindStringSubmatch(m)
		n, _ := strconv.Atoi(sub[1])
		return fmt.Sprintf("[%d]%s", n+1, sub[2])
	})
	v.errs = append(v.errs, &Error{File: v.file, Line: line, Key: shown, Msg: fmt.Sprintf(format, args...)})
}

// findUnindexed locates keys reported without an array index (toml's
// Undecoded keys), such as "hba.methd", by trying each block in turn.
func (k keyLines) findUnindexed(key string) int {
	parts := strings.Split(key, ".")
	for i := 1; i < len(parts); i++ {
		head := strings.Join(parts[:i], ".")
		for n := 0; n < 10000; n++ {
			base := head + "." + strconv.Itoa(n)
			if _, ok := k[base]; !ok {
				break
			}
			if line, ok := k[base+"."+strings.Join(parts[i:], ".")]; ok {
				return line
			}
		}
	}
	return 0
}

func (c *Config) validate(v *validator) {
	s := &c.Server
	if len(s.PGListen) == 0 && s.UnixSocketDir == "" {
		v.add("server.pg_listen", "no Postgres listener: give an address or a unix_socket_dir")
	}
	for _, a := range s.PGListen {
		if err := checkListen(a); err != nil {
			v.add("server.pg_listen", "%v", err)
		}
	}
	for _, a := range s.HTTPListen {
		if err := checkListen(a); err != nil {
			v.add("server.http_listen", "%v", err)
		}
	}
	if s.MetricsListen != "" {
		if err := checkListen(s.MetricsListen); err != nil {
			v.add("server.metrics_listen", "%v", err)
		}
	}
	if s.EventLoops < 0 || s.EventLoops > MaxEventLoops {
		v.add("server.event_loops", "must be 0 (half the cores) to %d, not %d", MaxEventLoops, s.EventLoops)
	}
	if s.PeerID < 0 || s.PeerID > MaxPeerID {
		v.add("server.peer_id", "must be 0 (no peers) to %d, not %d", MaxPeerID, s.PeerID)
	}
	if len(c.Peers) > 0 && s.PeerID == 0 {
		v.add("server.peer_id", "[[peers]] are listed but this instance has no peer_id; give each instance its own id, 1 to %d", MaxPeerID)
	}
	seenPeers := map[int]bool{}
	for i, p := range c.Peers {
		key := fmt.Sprintf("peers.%d", i)
		switch {
		case p.ID < 1 || p.ID > MaxPeerID:
			v.add(key+".id", "must be 1 to %d, not %d", MaxPeerID, p.ID)
		case p.ID == s.PeerID:
			v.add(key+".id", "%d is this instance's own server.peer_id; list only the other instances", p.ID)
		case seenPeers[p.ID]:
			v.add(key+".id", "peer id %d is listed twice", p.ID)
		}
		seenPeers[p.ID] = true
		if _, port, err := net.SplitHostPort(p.Address); err != nil || port == "" {
			v.add(key+".address", "must be host:port of the peer's Postgres listener, not %q", p.Address)
			continue
		}
		// A cancel request forwarded to an address that does not lead to
		// the peer comes back to a non-owner (see pgwire's
		// forwardsInFlight): refuse the cases the file itself shows.
		if l, ok := ownListener(s.PGListen, p.Address); ok {
			v.add(key+".address", "%s is this instance's own pg_listen %s; give the peer's own address", p.Address, l)
		}
		for j := range i {
			if c.Peers[j].Address == p.Address {
				v.add(key+".address", "%s is also the address of peers[%d]; each peer needs the address of its own listener", p.Address, j+1)
				break
			}
		}
	}
	if s.UnixSocketDir != "" && len(s.PGListen) == 0 {
		v.add("server.unix_socket_dir", "the socket is named after the port of the first pg_listen address; give one")
	} else if s.UnixSocketDir != "" {
		// The kernel takes at most 107 bytes of a socket path
		// (sun_path), which bind refused only when serve started;
		// PostgreSQL refuses such a folder as well.
		_, port, _ := net.SplitHostPort(s.PGListen[0])
		if port == "0" || port == "" {
			port = "65535" // chosen at start: the longest it can be
		}
		if path := filepath.Join(s.UnixSocketDir, ".s.PGSQL."+port); len(path) > maxSocketPath {
			v.add("server.unix_socket_dir", "the socket path %s is %d bytes, over the %d a unix socket path may have; choose a shorter folder", path, len(path), maxSocketPath)
		} else if s.ReusePort && len(path+".new") > maxSocketPath {
			// A process taking over the socket binds this name first.
			v.add("server.unix_socket_dir", "with reuse_port a new process binds %s.new before renaming it over the socket, and that path is %d bytes, over the %d a unix socket path may have; choose a shorter folder", path, len(path+".new"), maxSocketPath)
		}
	}
	if s.HTTPTLS && c.TLS == nil {
		v.add("server.http_tls", "needs a [tls] section")
	}
	if s.MaxConnections < 1 {
		v.add("server.max_connections", "must be at least 1")
	}
	if s.AuthTimeout.Duration <= 0 {
		v.add("server.auth_timeout", "must be positive")
	}
	if s.AdminDatabase == "" {
		v.add("server.admin_database", "must not be empty")
	}
	switch s.ProxyProtocol {
	case "off", "optional", "required":
	default:
		v.add("server.proxy_protocol", "must be off, optional or required, not %q", s.ProxyProtocol)
	}
	for _, p := range s.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			v.add("server.trusted_proxies", "%v", err)
		}
	}
	if (s.ProxyProtocol == "optional" || s.ProxyProtocol == "required") && len(s.TrustedProxies) == 0 {
		v.add("server.trusted_proxies", "proxy_protocol %q needs at least one trusted proxy; list the balancer's addresses, such as trusted_proxies = [\"10.0.0.5/32\"]", s.ProxyProtocol)
	}

	if t := c.TLS; t != nil {
		if t.CertFile == "" || t.KeyFile == "" {
			v.add("tls", "cert_file and key_file are required")
		} else if c.fileOK(v, "tls.cert_file", t.CertFile) && c.fileOK(v, "tls.key_file", t.KeyFile) {
			if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
				v.add("tls.key_file", "certificate and key do not pair: %v", err)
			}
		}
		if t.ClientCAFile != "" {
			c.fileOK(v, "tls.client_ca_file", t.ClientCAFile)
		}
		if t.CRLFile != "" {
			if t.ClientCAFile == "" {
				v.add("tls.crl_file", "needs client_ca_file: it lists revoked client certificates")
			} else {
				c.fileOK(v, "tls.crl_file", t.CRLFile)
			}
		}
		switch t.MinVersion {
		case "1.2", "1.3":
		default:
			v.add("tls.min_version", "must be \"1.2\" or \"1.3\", not %q", t.MinVersion)
		}
	}

	b := &c.Backend
	if b.Host == "" {
		v.add("backend.host", "must not be empty")
	}
	if b.Port < 1 || b.Port > 65535 {
		v.add("backend.port", "must be a port number, not %d", b.Port)
	} else if l, ok := c.ownServer(b.Host, b.Port); ok {
		v.add("backend.port", "%s port %d is this instance's own listener %s: every login would log in to pgwarden again; give the PostgreSQL server's address", b.Host, b.Port, l)
	}
	switch b.SSLMode {
	case "disable", "prefer", "require", "verify-ca", "verify-full":
	default:
		v.add("backend.sslmode", "must be disable, prefer, require, verify-ca or verify-full, not %q", b.SSLMode)
	}
	switch b.ChannelBinding {
	case "require":
		if b.SSLMode == "disable" {
			v.add("backend.channel_binding", "require binds SCRAM to the TLS connection, and backend.sslmode is disable")
		}
	case "disable", "prefer":
	default:
		v.add("backend.channel_binding", "must be disable, prefer or require, not %q", b.ChannelBinding)
	}
	if _, err := ParseRequireAuth(b.RequireAuth); err != nil {
		v.add("backend.require_auth", "%v", err)
	}
	for key, p := range map[string]string{"backend.sslrootcert": b.SSLRootCert, "backend.sslcert": b.SSLCert, "backend.sslkey": b.SSLKey} {
		if p != "" {
			c.fileOK(v, key, p)
		}
	}
	if (b.SSLCert == "") != (b.SSLKey == "") {
		v.add("backend.sslcert", "sslcert and sslkey go together")
	}
	if b.ConnectTimeout.Duration <= 0 {
		v.add("backend.connect_timeout", "must be positive")
	}
	if b.PoolSize < 0 {
		v.add("backend.pool_size", "must not be negative")
	}
	if n := c.OwnBackendConns(); b.MaxBackendConnections < n+1 {
		if n > 0 {
			v.add("backend.max_backend_connections", "must be at least %d: it counts the %d connections pgwarden keeps to the backend server for itself ([auth_query] 2, a PostgreSQL [store] there 5)", n+1, n)
		} else {
			v.add("backend.max_backend_connections", "must be at least 1")
		}
	}

	seen := map[string]bool{}
	for i, d := range c.Databases {
		key := fmt.Sprintf("databases.%d", i)
		if d.Name == "" {
			v.add(key+".name", "must not be empty")
		}
		if seen[d.Name] {
			v.add(key+".name", "database %q is listed twice", d.Name)
		}
		seen[d.Name] = true
		if d.Name == c.Server.AdminDatabase && d.Name != "" {
			v.add(key+".name", "%q is server.admin_database: clients asking for it get the admin console, never this entry; rename one of them", d.Name)
		}
		if d.Port < 0 || d.Port > 65535 {
			v.add(key+".port", "must be a port number, not %d", d.Port)
		} else if host, port, l, ok := c.ownServerOverride(d.Host, d.Port); ok {
			v.add(key+".port", "%s port %d is this instance's own listener %s: every login would log in to pgwarden again; give the PostgreSQL server's address", host, port, l)
		}
		if len(d.BackendDBName) > 63 {
			v.add(key+".backend_dbname", "is %d bytes; PostgreSQL keeps 63 and would connect to a database of its first 63", len(d.BackendDBName))
		}
	}

	switch c.Store.Kind {
	case "file":
	case "postgres":
		if c.Store.Database == "" || c.Store.User == "" {
			v.add("store.database", "the postgres store needs a database and a user")
		}
		if c.Store.Port < 0 || c.Store.Port > 65535 {
			v.add("store.port", "must be a port number, not %d", c.Store.Port)
		} else if host, port, l, ok := c.ownServerOverride(c.Store.Host, c.Store.Port); ok {
			v.add("store.port", "%s port %d is this instance's own listener %s: the store is a PostgreSQL database; give its server's address", host, port, l)
		}
		switch c.Store.SSLMode {
		case "", "disable", "prefer", "require", "verify-ca", "verify-full":
		default:
			v.add("store.sslmode", "must be disable, prefer, require, verify-ca or verify-full, not %q", c.Store.SSLMode)
		}
	default:
		v.add("store.kind", "must be file or postgres, not %q", c.Store.Kind)
	}
	if c.Users.File == "" {
		v.add("users.file", "must not be empty")
	}
	if s := c.Users.MockAuthSecret; s != "" && len(s) < 16 {
		v.add("users.mock_auth_secret", "must be at least 16 characters (a random string, the same on every instance)")
	}
	if c.Users.PasswordMinLength < 0 {
		v.add("users.password_min_length", "must not be negative")
	}
	for _, b := range []struct {
		key      string
		val, min int
	}{
		{"users.max_scram_iterations", c.Users.MaxSCRAMIterations, 4096},
		{"users.max_pbkdf2_iterations", c.Users.MaxPBKDF2Iterations, 1000},
		{"users.max_bcrypt_cost", c.Users.MaxBcryptCost, 4},
		{"users.max_argon2_memory", c.Users.MaxArgon2Memory, 8},
		{"users.max_argon2_time", c.Users.MaxArgon2Time, 1},
	} {
		if b.val < b.min {
			v.add(b.key, "must be at least %d, not %d", b.min, b.val)
		}
	}

	if a := c.AuthQuery; a != nil {
		switch a.Mode {
		case "lookup", "verify":
		default:
			v.add("auth_query.mode", "must be lookup or verify, not %q", a.Mode)
		}
		if a.Query == "" {
			v.add("auth_query.query", "must not be empty")
		} else if !strings.Contains(a.Query, "$1") || (a.Mode == "verify" && !strings.Contains(a.Query, "$2")) {
			v.add("auth_query.query", "must take the user as $1 (and, in verify mode, the password as $2)")
		}
	}

	c.checkWritableByAll(v)

	if c.Throttle.MaxDelay.Duration < c.Throttle.FailureDelay.Duration {
		v.add("throttle.max_delay", "must not be below failure_delay")
	}
	if p := c.Throttle.IPv6Prefix; p < 32 || p > 128 {
		v.add("throttle.ipv6_prefix", "must be between 32 and 128 bits, not %d", p)
	}

	h := &c.HTTP
	if h.AuthFailureStatus < 400 || h.AuthFailureStatus > 599 {
		v.add("http.auth_failure_status", "must be an HTTP error status (400-599), not %d", h.AuthFailureStatus)
	}
	if h.MaxBodyBytes < 1 {
		v.add("http.max_body_bytes", "must be positive")
	}
	if h.MaxRows < 1 {
		v.add("http.max_rows", "must be positive")
	}
	if h.MaxResultBytes < 1 || h.MaxResultBytes > maxResultBytesLimit {
		v.add("http.max_result_bytes", "must be between 1 and %d (1 GiB, PostgreSQL's largest value)", int64(maxResultBytesLimit))
	}
	if least := h.leastRequestMemory(); h.MaxRequestMemory < 0 || (h.MaxRequestMemory > 0 && h.MaxRequestMemory < least) {
		v.add("http.max_request_memory", "must be 0 (the default: %d with these settings) or at least %d, not %d: one source may take half of it, where an answer of http.max_result_bytes must fit, and a body of http.max_body_bytes takes twice its size from an eighth of it", h.RequestMemoryDefault(), least, h.MaxRequestMemory)
	}
	if h.StatementTimeout.Duration < 0 {
		v.add("http.statement_timeout", "must not be negative")
	}
	if h.SessionTTL.Duration <= 0 {
		v.add("http.session_ttl", "must be positive")
	}
	if h.SessionIdleTimeout.Duration <= 0 {
		v.add("http.session_idle_timeout", "must be positive")
	}

	if c.Tokens.Issuer == "" {
		v.add("tokens.issuer", "must not be empty")
	}
	if c.Tokens.DefaultTTL.Duration <= 0 || c.Tokens.MaxTTL.Duration < c.Tokens.DefaultTTL.Duration {
		v.add("tokens.max_ttl", "default_ttl must be positive and max_ttl at least default_ttl")
	}
	for i, j := range c.JWTIssuers {
		key := fmt.Sprintf("jwt_issuers.%d", i)
		if j.Issuer == "" {
			v.add(key+".issuer", "must not be empty")
		}
		if j.Issuer == c.Tokens.Issuer {
			v.add(key+".issuer", "%q is pgwarden's own tokens.issuer", j.Issuer)
		}
		if err := checkJWKSURL(j.JWKSURL); err != nil {
			v.add(key+".jwks_url", "%v", err)
		}
		for _, alg := range j.Algorithms {
			switch alg {
			case "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA", "PS256", "PS384", "PS512":
			default:
				v.add(key+".algorithms", "algorithm %q is not accepted for external issuers", alg)
			}
		}
	}

	if len(c.HBA) == 0 && c.HBAFile == "" {
		v.add("hba", "there are no HBA rules: add [[hba]] blocks or an hba_file")
	}
	if c.HBAFile != "" {
		c.fileOK(v, "hba_file", c.HBAFile)
	}

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		v.add("log.format", "must be json or console, not %q", c.Log.Format)
	}
}

// fileOK checks that the file a key names can be read, and says how to
// make a missing one.
func (c *Config) fileOK(v *validator, key, path string) bool {
	f, err := os.Open(path)
	if err != nil {
		fix := ""
		if errors.Is(err, fs.ErrNotExist) {
			fix = "; " + missingFileFix(key, c.Path)
		}
		v.add(key, "cannot read %s: %v%s", path, unwrapPathError(err), fix)
		return false
	}
	f.Close()
	return true
}

// FileError is the error for a file the configuration names under key
// that cannot be read: where the key is written and, for a missing file,
// how to make it.
func (c *Config) FileError(key, path string, err error) *Error {
	msg := fmt.Sprintf("cannot read %s: %v", path, unwrapPathError(err))
	if errors.Is(err, fs.ErrNotExist) {
		msg += "; " + missingFileFix(key, c.Path)
	}
	return &Error{File: c.Path, Line: c.Line(key), Key: key, Msg: msg}
}

// missingFileFix says how to make the file key names.
func missingFileFix(key, cfgPath string) string {
	switch {
	case key == "users.file":
		return fmt.Sprintf("create it with `pgwarden user add NAME -c %s` (an empty file is a users file with no users)", cfgPath)
	case strings.HasPrefix(key, "tls."):
		return "make a CA and certificates with `pgwarden certs init --dir DIR`, or point the key at your own PEM file"
	case key == "hba_file":
		return "write it in pg_hba.conf form, or remove hba_file and keep the [[hba]] rules in this file"
	default:
		return "check the path (relative paths start at the configuration file's folder)"
	}
}

func checkListen(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("listener %q: %v", a, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("listener %q: bad port", a)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("listener %q: host must be an IP address", a)
		}
	}
	return nil
}

func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return errors.New("not an absolute URL")
	}
	// The messages name the URL without a password it may carry: they
	// reach pgwarden check's output and the log of a failed reload.
	s = u.Redacted()
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("%q: http is allowed on loopback only", s)
	default:
		return fmt.Errorf("%q: scheme must be https", s)
	}
}

// ParsePrefix reads a CIDR, or a bare address as a single-host prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return NormalizePrefix(p), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or IP address", s)
}

// NormalizePrefix masks p and writes an IPv4-mapped IPv6 network as the
// IPv4 network it is: pgwarden sees a client at ::ffff:a.b.c.d as a.b.c.d,
// so ::ffff:10.0.0.0/104 is 10.0.0.0/8. The mask comes first. A mapped
// address under a prefix shorter than 96 bits ("::ffff:10.0.0.0/8") names
// the IPv6 network it masks to (::/8, which holds ::1), as in PostgreSQL;
// unmapping it first asked for a negative IPv4 length, which made a prefix
// that contains no address, so a reject rule written that way loaded and
// stopped no one (until December 2026).
func NormalizePrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if p.Addr().Is4In6() {
		// Masked and still mapped: the mask keeps all of ::ffff:0:0/96.
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// ownServer reports which of this instance's Postgres listeners a backend
// server at host and port would be: a TCP listener (see ownListener) or
// the unix socket (host its folder, port the first pg_listen's).
func (c *Config) ownServer(host string, port int) (string, bool) {
	s := &c.Server
	if strings.HasPrefix(host, "/") {
		if s.UnixSocketDir == "" || len(s.PGListen) == 0 || filepath.Clean(host) != filepath.Clean(s.UnixSocketDir) {
			return "", false
		}
		if _, p, err := net.SplitHostPort(s.PGListen[0]); err == nil && p == strconv.Itoa(port) {
			return filepath.Join(s.UnixSocketDir, ".s.PGSQL."+p), true
		}
		return "", false
	}
	return ownListener(s.PGListen, net.JoinHostPort(host, strconv.Itoa(port)))
}

// ownServerOverride is ownServer for a host and port that override
// [backend]'s where set ("" and 0 take [backend]'s). Nothing overridden is
// [backend] itself, which is checked on its own.
func (c *Config) ownServerOverride(host string, port int) (string, int, string, bool) {
	if host == "" && port == 0 {
		return "", 0, "", false
	}
	if host == "" {
		host = c.Backend.Host
	}
	if port == 0 {
		port = c.Backend.Port
	}
	l, ok := c.ownServer(host, port)
	return host, port, l, ok
}

// ownListener reports which of listens the peer address addr names: the
// same host and port; "localhost" and a loopback listen address of that
// port; or a loopback host and a listen address of that port that covers
// every interface (no other process can listen there, short of
// SO_REUSEPORT, which makes the address lead to either).
func ownListener(listens []string, addr string) (string, bool) {
	host, port, _ := net.SplitHostPort(addr)
	loopback := host == "localhost"
	if a, err := netip.ParseAddr(host); err == nil {
		loopback = a.Unmap().IsLoopback()
	}
	for _, l := range listens {
		lh, lp, err := net.SplitHostPort(l)
		if err != nil || lp != port {
			continue
		}
		la, err := netip.ParseAddr(lh)
		every := lh == "" || err == nil && la.IsUnspecified()
		switch {
		case lh == host, loopback && every,
			host == "localhost" && (lh == "localhost" || err == nil && la.Unmap().IsLoopback()):
			return l, true
		}
	}
	return "", false
}

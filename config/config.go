// Package config reads and validates pgwarden's TOML configuration.
//
// Loading is strict: unknown keys are errors, every problem is gathered and
// reported at once with the file, line and key it concerns, and relative
// paths are resolved against the configuration file's folder.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole configuration file, with defaults filled in.
type Config struct {
	// Path is the absolute path of the file this was read from.
	Path string `toml:"-"`

	HBAFile    string      `toml:"hba_file"`
	Server     Server      `toml:"server"`
	TLS        *TLS        `toml:"tls"`
	Backend    Backend     `toml:"backend"`
	Databases  []Database  `toml:"databases"`
	Users      Users       `toml:"users"`
	AuthQuery  *AuthQuery  `toml:"auth_query"`
	Store      Store       `toml:"store"`
	Throttle   Throttle    `toml:"throttle"`
	HTTP       HTTP        `toml:"http"`
	Tokens     Tokens      `toml:"tokens"`
	JWTIssuers []JWTIssuer `toml:"jwt_issuers"`
	HBA        []HBARule   `toml:"hba"`
	Log        Log         `toml:"log"`
	Peers      []Peer      `toml:"peers"`

	lines keyLines

	// TokensSet tells whether a [tokens] section was written, which makes
	// pgwarden's own tokens a way a jwt rule can be satisfied.
	TokensSet bool `toml:"-"`
}

// Server holds the listeners and connection limits.
type Server struct {
	PGListen        []string `toml:"pg_listen"`
	HTTPListen      []string `toml:"http_listen"`
	HTTPTLS         bool     `toml:"http_tls"`
	UnixSocketDir   string   `toml:"unix_socket_dir"`
	MaxConnections  int      `toml:"max_connections"`
	AuthTimeout     Duration `toml:"auth_timeout"`
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	AdminDatabase   string   `toml:"admin_database"`
	ProxyProtocol   string   `toml:"proxy_protocol"`
	TrustedProxies  []string `toml:"trusted_proxies"`
	// MetricsListen serves /metrics, /healthz and /readyz on an address of
	// their own (and /metrics no longer on http_listen); "" keeps them on
	// http_listen.
	MetricsListen string `toml:"metrics_listen"`
	// PeerID is this instance's id in the cancel keys it hands out (0: no
	// peers); ReusePort opens the listeners with SO_REUSEPORT.
	PeerID    int  `toml:"peer_id"`
	ReusePort bool `toml:"reuse_port"`
	// EventLoop relays plaintext sessions with backend reuse in epoll
	// loops (Linux), without goroutines per session; false keeps a
	// goroutine pair per session.
	EventLoop bool `toml:"event_loop"`
	// EventLoops is how many loops (0: half the cores Go uses, at least
	// one). Fewer loops each find more ready sessions per wake-up.
	EventLoops int `toml:"event_loops"`
}

// Peer is another instance: CancelRequests for keys carrying its id are
// forwarded to its Postgres listener.
type Peer struct {
	ID      int    `toml:"id"`
	Address string `toml:"address"`
}

// MaxPeerID is the largest peer id: the id takes the top 10 bits of the
// 32-bit cancel key.
const MaxPeerID = 1023

// MaxEventLoops bounds server.event_loops: each loop is an epoll set and
// a goroutine, and more loops than cores only divide the batches.
const MaxEventLoops = 256

// TLS is the server certificate and the CA that client certificates must
// chain to. A nil *TLS means TLS is off.
type TLS struct {
	CertFile     string `toml:"cert_file"`
	KeyFile      string `toml:"key_file"`
	ClientCAFile string `toml:"client_ca_file"`
	// CRLFile lists revoked client certificates (PostgreSQL's
	// ssl_crl_file): PEM or DER certificate revocation lists.
	CRLFile    string `toml:"crl_file"`
	MinVersion string `toml:"min_version"`
}

// Backend describes the PostgreSQL server pgwarden relays to.
type Backend struct {
	Host                  string   `toml:"host"`
	Port                  int      `toml:"port"`
	SSLMode               string   `toml:"sslmode"`
	SSLRootCert           string   `toml:"sslrootcert"`
	SSLCert               string   `toml:"sslcert"`
	SSLKey                string   `toml:"sslkey"`
	RequireAuth           string   `toml:"require_auth"`
	ChannelBinding        string   `toml:"channel_binding"`
	Password              string   `toml:"password"`
	Passthrough           bool     `toml:"passthrough"`
	ConnectTimeout        Duration `toml:"connect_timeout"`
	Reuse                 bool     `toml:"reuse"`
	ResetQuery            string   `toml:"reset_query"`
	PoolSize              int      `toml:"pool_size"`
	MaxBackendConnections int      `toml:"max_backend_connections"`
	IdleTimeout           Duration `toml:"idle_timeout"`
	MaxLifetime           Duration `toml:"max_lifetime"`

	// TLSDigest names the backend TLS settings (require_auth and
	// channel_binding included) and the contents of the files they name,
	// as loaded (set by backend.Validate). Backends kept
	// for reuse carry the digest of their login, so that none made under
	// settings a reload replaced is handed out again.
	TLSDigest string `toml:"-"`
}

// Database routes a client-visible database name to a backend database.
type Database struct {
	Name          string `toml:"name"`
	BackendDBName string `toml:"backend_dbname"`
	Host          string `toml:"host"`
	Port          int    `toml:"port"`
	// DefaultServer says that Host, though written differently, may be the
	// default backend server: set when the configuration loads, from the
	// addresses both names had then (see backend.Validate).
	DefaultServer bool `toml:"-"`
}

// Users locates the users file and sets the password policy.
type Users struct {
	File              string `toml:"file"`
	PasswordMinLength int    `toml:"password_min_length"`
	// Bounds on the work one stored hash may ask for, wherever it comes
	// from (users file or auth_query).
	MaxSCRAMIterations  int `toml:"max_scram_iterations"`
	MaxPBKDF2Iterations int `toml:"max_pbkdf2_iterations"`
	MaxBcryptCost       int `toml:"max_bcrypt_cost"`
	MaxArgon2Memory     int `toml:"max_argon2_memory"` // KiB
	MaxArgon2Time       int `toml:"max_argon2_time"`
	// MockAuthSecret keys what unknown names are shown (their SCRAM salt
	// and iteration count): instances behind one address that share it
	// answer an unknown name alike, also across restarts.
	MockAuthSecret string `toml:"mock_auth_secret"`
}

// AuthQuery looks credentials up in the backend database.
type AuthQuery struct {
	Mode     string `toml:"mode"`
	Query    string `toml:"query"`
	Database string `toml:"database"`
	User     string `toml:"user"`
	Password string `toml:"password"`
}

// Store is where the users live: the users file (kind "file"), or a
// pgwarden schema in PostgreSQL (kind "postgres") shared by every instance.
// Host, port and sslmode default to [backend]'s.
type Store struct {
	Kind     string `toml:"kind"`
	Database string `toml:"database"`
	User     string `toml:"user"`
	Password string `toml:"password"`
	Host     string `toml:"host"`
	Port     int    `toml:"port"`
	SSLMode  string `toml:"sslmode"`
}

// Throttle slows down repeated failures from one (address, user).
type Throttle struct {
	FailureDelay Duration `toml:"failure_delay"`
	MaxDelay     Duration `toml:"max_delay"`
	// IPv6Prefix is how many leading bits of an IPv6 address name one
	// source: a host is given a /64 to choose addresses from.
	IPv6Prefix int `toml:"ipv6_prefix"`
}

// HTTP configures the HTTP frontend.
type HTTP struct {
	DefaultDatabase   string `toml:"default_database"`
	DefaultUser       string `toml:"default_user"`
	AuthFailureStatus int    `toml:"auth_failure_status"`
	Realm             string `toml:"realm"`
	MaxBodyBytes      int64  `toml:"max_body_bytes"`
	MaxRows           int    `toml:"max_rows"`
	// MaxResultBytes bounds the bytes of row values one request reads
	// from the backend: without it one SELECT of a large value could
	// take the gateway's memory from every other client.
	MaxResultBytes int64 `toml:"max_result_bytes"`
	// MaxRequestMemory bounds what all HTTP requests in progress hold
	// together, their bodies and answers (0: RequestMemory's default):
	// bounds per request still let many requests at once take the
	// gateway's memory, and every wire session with it.
	MaxRequestMemory int64    `toml:"max_request_memory"`
	StatementTimeout Duration `toml:"statement_timeout"`
	SessionTTL       Duration `toml:"session_ttl"`
	// SessionIdleTimeout ends a console session unused this long; the SPEC
	// names one key (session_ttl, the absolute lifetime) for both timeouts.
	SessionIdleTimeout Duration `toml:"session_idle_timeout"`
	Console            bool     `toml:"console"`
	// AllowedHosts are Host names accepted besides localhost and the
	// listen addresses; any other Host is 421 (DNS rebinding).
	AllowedHosts []string `toml:"allowed_hosts"`
}

// DefaultRequestMemory is http.max_request_memory when it is not set,
// unless the other HTTP limits need more (RequestMemory).
const DefaultRequestMemory = 256 << 20

// RequestMemory is the budget of all HTTP requests in progress:
// max_request_memory, or when it is 0 its default (RequestMemoryDefault).
func (h *HTTP) RequestMemory() int64 {
	if h.MaxRequestMemory > 0 {
		return h.MaxRequestMemory
	}
	return h.RequestMemoryDefault()
}

// RequestMemoryDefault is max_request_memory's default: the larger of
// 256 MiB and twice the least the limit may be (leastRequestMemory), so
// that two requests at the other limits fit at once.
func (h *HTTP) RequestMemoryDefault() int64 {
	return max(DefaultRequestMemory, 2*h.leastRequestMemory())
}

// leastRequestMemory is the least max_request_memory under which every
// request within the other limits can be served alone, from the half of
// it one source may take: an answer of max_result_bytes (its JSON, which
// grows past its length as it is written, and its backend message beside
// it), and a body of max_body_bytes, which takes twice its size and one
// byte from the half of the quarter that bodies not yet proved may take.
func (h *HTTP) leastRequestMemory() int64 {
	return max(4*h.MaxResultBytes, 8*2*(h.MaxBodyBytes+1))
}

// Tokens configures the HS256 tokens pgwarden issues itself.
type Tokens struct {
	Issuer     string   `toml:"issuer"`
	DefaultTTL Duration `toml:"default_ttl"`
	MaxTTL     Duration `toml:"max_ttl"`
}

// JWTIssuer is an external identity provider whose tokens are accepted.
type JWTIssuer struct {
	Issuer        string   `toml:"issuer"`
	JWKSURL       string   `toml:"jwks_url"`
	Audience      string   `toml:"audience"`
	UsernameClaim string   `toml:"username_claim"`
	Algorithms    []string `toml:"algorithms"`
	Refresh       Duration `toml:"refresh"`
	// RoleClaim names a claim that gives the backend role of a token whose
	// identity has no users-file entry; RolesAllowed lists the roles it may
	// name.
	RoleClaim    string   `toml:"role_claim"`
	RolesAllowed []string `toml:"roles_allowed"`
}

// HBARule is one [[hba]] block as written; package hba normalizes it.
type HBARule struct {
	Protocol   string     `toml:"protocol"`
	Address    StringList `toml:"address"`
	SSL        string     `toml:"ssl"`
	Database   StringList `toml:"database"`
	User       StringList `toml:"user"`
	Method     string     `toml:"method"`
	ClientCert string     `toml:"clientcert"`
	// Issuer and Scope are method oauth's options.
	Issuer string `toml:"issuer"`
	Scope  string `toml:"scope"`

	// Line is where the block starts in the configuration file.
	Line int `toml:"-"`
}

// Log configures the process log and the audit log.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// StringList reads either one string or an array of strings, so that
// `user = "alice"` and `user = ["alice", "bob"]` both work.
type StringList []string

// UnmarshalTOML implements toml.Unmarshaler.
func (l *StringList) UnmarshalTOML(v any) error {
	switch t := v.(type) {
	case string:
		*l = StringList{t}
	case []any:
		out := make(StringList, 0, len(t))
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("expected a string or a list of strings, found %T", e)
			}
			out = append(out, s)
		}
		*l = out
	default:
		return fmt.Errorf("expected a string or a list of strings, found %T", v)
	}
	return nil
}

// Default returns a configuration with every default of the SPEC.
func Default() *Config {
	d := func(v time.Duration) Duration { return Duration{v} }
	return &Config{
		Server: Server{
			PGListen:        []string{"127.0.0.1:6432"},
			HTTPListen:      []string{"127.0.0.1:8432"},
			UnixSocketDir:   "/tmp",
			MaxConnections:  1000,
			AuthTimeout:     d(10 * time.Second),
			ShutdownTimeout: d(30 * time.Second),
			AdminDatabase:   "pgwarden",
			ProxyProtocol:   "off",
			EventLoop:       true,
		},
		Backend: Backend{
			Host:                  "127.0.0.1",
			Port:                  5432,
			SSLMode:               "prefer",
			ChannelBinding:        "prefer",
			ConnectTimeout:        d(5 * time.Second),
			Reuse:                 true,
			ResetQuery:            "DISCARD ALL",
			PoolSize:              20,
			MaxBackendConnections: 100,
			IdleTimeout:           d(10 * time.Minute),
			MaxLifetime:           d(time.Hour),
		},
		// The hash bounds pass PostgreSQL's SCRAM default (4096) 25 times
		// over, OWASP's PBKDF2-SHA512 (210,000) and argon2id advice and
		// RFC 9106's (64 MiB, t=3) with room, and bcrypt up to Caddy's
		// default cost of 14 (Go's and htpasswd's are 10).
		Users: Users{File: "users.toml", PasswordMinLength: 8, MaxSCRAMIterations: 100_000, MaxPBKDF2Iterations: 1_000_000,
			MaxBcryptCost: 14, MaxArgon2Memory: 262_144, MaxArgon2Time: 10},
		Throttle: Throttle{FailureDelay: d(time.Second), MaxDelay: d(30 * time.Second), IPv6Prefix: 64},
		HTTP: HTTP{
			AuthFailureStatus:  401,
			Realm:              "pgwarden",
			MaxBodyBytes:       1 << 20,
			MaxRows:            10000,
			MaxResultBytes:     32 << 20,
			StatementTimeout:   d(30 * time.Second),
			SessionTTL:         d(12 * time.Hour),
			SessionIdleTimeout: d(30 * time.Minute),
			Console:            true,
		},
		Tokens: Tokens{Issuer: "pgwarden", DefaultTTL: d(90 * 24 * time.Hour), MaxTTL: d(365 * 24 * time.Hour)},
		Log:    Log{Level: "info", Format: "json"},
		Store:  Store{Kind: "file", Database: "postgres", User: "pgwarden_store"},
	}
}

// Load reads, defaults and validates the configuration file at path. The
// returned error, if any, is an Errors listing every problem found. With
// validation errors the Config returned beside them is what could be read,
// so that callers can look for more problems (in the users file, the HBA
// rules, the certificates) and report them in the same run; it must not be
// served.
func Load(path string) (*Config, error) {
	cfg, _, err := LoadData(path)
	return cfg, err
}

// LoadData is Load that also returns the bytes it parsed (nil when the
// file could not be read): the file watch starts from what the first load
// read, not from a second look at the file.
func LoadData(path string) (*Config, []byte, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, err
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, nil, readError(path, abs, err)
	}
	cfg, err := Parse(abs, data)
	return cfg, data, err
}

// readError explains a configuration file that cannot be read, and what
// to do about a missing one.
func readError(path, abs string, err error) error {
	msg := unwrapPathError(err).Error()
	if errors.Is(err, fs.ErrNotExist) {
		how := "the default path when neither -c nor $PGWARDEN_CONFIG is given"
		if os.Getenv("PGWARDEN_CONFIG") == path {
			how = "from $PGWARDEN_CONFIG"
		} else if path != "config.toml" {
			how = "given with -c"
		}
		msg = fmt.Sprintf("no configuration file here (%s, %s); give one with -c FILE, or start from config.toml.example", abs, how)
	}
	return Errors{{File: path, Msg: msg}}
}

// Parse decodes and validates data as if read from path; see Load for what
// it returns.
func Parse(path string, data []byte) (*Config, error) {
	cfg := Default()
	cfg.Path = path
	lines := scanKeyLines(data)
	// The file is read as a document first: a syntax error stops there,
	// but a value of the wrong type is reported and left out, so that the
	// struct decode below and the validation still report the rest.
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		return nil, decodeError(path, data, err)
	}
	v := &validator{file: path, lines: lines}
	checkTypes(v, doc, reflect.TypeOf(Config{}), "")
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(doc); err != nil {
		return nil, Errors{{File: path, Msg: err.Error()}}
	}
	md, err := toml.Decode(buf.String(), cfg)
	if err != nil {
		return nil, decodeError(path, data, err)
	}
	for _, k := range md.Undecoded() {
		msg := "unknown key"
		if s := Suggest(k[len(k)-1], knownKeys(k[:len(k)-1])); s != "" {
			msg += fmt.Sprintf("; did you mean %s?", s)
		} else {
			msg += "; the keys are listed in docs/configuration.md"
		}
		v.add(k.String(), "%s", msg)
	}
	for i := range cfg.HBA {
		cfg.HBA[i].Line = lines.line(fmt.Sprintf("hba.%d", i))
		fillRuleDefaults(&cfg.HBA[i], md, i)
	}
	for i := range cfg.JWTIssuers {
		fillIssuerDefaults(&cfg.JWTIssuers[i])
	}
	if cfg.TLS != nil && cfg.TLS.MinVersion == "" {
		cfg.TLS.MinVersion = "1.2"
	}
	if cfg.AuthQuery != nil {
		fillAuthQueryDefaults(cfg.AuthQuery, md)
	}
	cfg.TokensSet = md.IsDefined("tokens")
	cfg.lines = lines
	cfg.resolvePaths()
	cfg.validate(v)
	if len(v.errs) > 0 {
		// In the order of the file, as an editor shows it.
		sort.SliceStable(v.errs, func(i, j int) bool { return lineOrder(v.errs[i]) < lineOrder(v.errs[j]) })
		return cfg, v.errs
	}
	return cfg, nil
}

// lineOrder sorts errors without a line (about the file as a whole) last.
func lineOrder(e *Error) int {
	if e.Line == 0 {
		return 1 << 30
	}
	return e.Line
}

// Line is the line of the configuration file that key (such as
// "users.file" or "hba.2.method") is written on; 0 when it is not written.
func (c *Config) Line(key string) int {
	if c.lines == nil {
		return 0
	}
	return c.lines.line(key)
}

func fillRuleDefaults(r *HBARule, md toml.MetaData, _ int) {
	if r.Protocol == "" {
		r.Protocol = "all"
	}
	if r.Address == nil {
		r.Address = StringList{"all"}
	}
	if r.SSL == "" {
		r.SSL = "any"
	}
	if r.Database == nil {
		r.Database = StringList{"all"}
	}
	if r.User == nil {
		r.User = StringList{"all"}
	}
}

func fillIssuerDefaults(j *JWTIssuer) {
	if j.JWKSURL == "" {
		j.JWKSURL = j.Issuer
	}
	if j.Audience == "" {
		j.Audience = "pgwarden"
	}
	if j.UsernameClaim == "" {
		j.UsernameClaim = "username"
	}
	if len(j.Algorithms) == 0 {
		j.Algorithms = []string{"RS256"}
	}
	if j.Refresh.Duration == 0 {
		j.Refresh.Duration = 10 * time.Minute
	}
}

// DefaultAuthQuery is the lookup query when none is configured: the stored
// SCRAM verifier of a role that may log in, and its VALID UNTIL, which
// PostgreSQL enforces on password logins and so must pgwarden (the SPEC's
// one-column default let an expired role in).
const DefaultAuthQuery = "SELECT passwd, valuntil FROM pg_catalog.pg_shadow WHERE usename = $1"

func fillAuthQueryDefaults(a *AuthQuery, md toml.MetaData) {
	if a.Mode == "" {
		a.Mode = "lookup"
	}
	if !md.IsDefined("auth_query", "query") && a.Mode == "lookup" {
		a.Query = DefaultAuthQuery
	}
	if a.Database == "" {
		a.Database = "postgres"
	}
	if a.User == "" {
		a.User = "pgwarden_auth"
	}
}

// Dir is the folder relative paths in the configuration are resolved against.
func (c *Config) Dir() string { return filepath.Dir(c.Path) }

// Resolve makes p absolute relative to the configuration's folder.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir(), p)
}

func (c *Config) resolvePaths() {
	c.HBAFile = c.Resolve(c.HBAFile)
	c.Users.File = c.Resolve(c.Users.File)
	if c.TLS != nil {
		c.TLS.CertFile = c.Resolve(c.TLS.CertFile)
		c.TLS.KeyFile = c.Resolve(c.TLS.KeyFile)
		c.TLS.ClientCAFile = c.Resolve(c.TLS.ClientCAFile)
		c.TLS.CRLFile = c.Resolve(c.TLS.CRLFile)
	}
	c.Backend.SSLRootCert = c.Resolve(c.Backend.SSLRootCert)
	c.Backend.SSLCert = c.Resolve(c.Backend.SSLCert)
	c.Backend.SSLKey = c.Resolve(c.Backend.SSLKey)
	if c.Server.UnixSocketDir != "" {
		c.Server.UnixSocketDir = c.Resolve(c.Server.UnixSocketDir)
	}
}

// decodeError reports a TOML syntax error at the line it is on, with the
// table or key it concerns and, where the decoder's words are obscure,
// what to write instead.
func decodeError(path string, data []byte, err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return Errors{{File: path, Msg: err.Error()}}
	}
	line, key, msg := pe.Position.Line, pe.LastKey, pe.Message
	src := strings.Split(string(data), "\n")
	text := func(n int) string {
		if n >= 1 && n <= len(src) {
			return strings.TrimSpace(src[n-1])
		}
		return ""
	}
	// The decoder notices a line is unfinished at its newline, and counts
	// that newline as the next line.
	if strings.Contains(msg, `'\n'`) && line > 1 && text(line) != "" && !strings.HasPrefix(text(line-1), "#") && text(line-1) != "" {
		line--
	}
	if t := text(line); strings.HasPrefix(t, "[") {
		name := strings.Trim(t, "[] \t")
		key = name
		head := strings.TrimRight(strings.SplitN(t, "#", 2)[0], " \t")
		if !strings.HasSuffix(head, "]") || (strings.HasPrefix(head, "[[") && !strings.HasSuffix(head, "]]")) {
			msg = fmt.Sprintf("the table header is not closed; write [%s]", name)
			if strings.HasPrefix(t, "[[") {
				msg = fmt.Sprintf("the table header is not closed; write [[%s]]", name)
			}
		} else {
			msg += "; a table header is [name] or [[name]] on a line of its own"
		}
	} else if k, _, ok := strings.Cut(text(line), "="); ok {
		key = strings.TrimSpace(k)
		if strings.Contains(msg, "expected value") || strings.Contains(msg, "invalid") || strings.Contains(msg, "bare keys cannot contain") {
			msg += `; strings are quoted ("..."), lists are [..., ...]`
		}
		msg = RedactSecretSyntax(text(line), msg)
	}
	return Errors{{File: path, Line: line, Key: key, Msg: "TOML syntax: " + msg}}
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// RestartKeys are the keys a reload does not apply: they are read once, at
// start (listeners cannot move under open sockets, the log's format is
// fixed with its encoder). A reload that changes one logs a warning.
var RestartKeys = map[string]bool{
	"server.pg_listen":       true,
	"server.http_listen":     true,
	"server.http_tls":        true,
	"server.unix_socket_dir": true,
	"server.metrics_listen":  true,
	"server.peer_id":         true,
	"store.kind":             true,
	"store.database":         true,
	"store.user":             true,
	"store.password":         true,
	"store.host":             true,
	"store.port":             true,
	"store.sslmode":          true,
	"server.reuse_port":      true,
	"server.event_loop":      true,
	"server.event_loops":     true,
	"log.format":             true,
}

// ChangedRestartKeys lists the RestartKeys whose values differ between old
// and new, for the reload's warning.
func ChangedRestartKeys(old, new *Config) []string {
	var out []string
	for key := range RestartKeys {
		a, _ := keyValue(reflect.ValueOf(old).Elem(), strings.Split(key, "."))
		b, _ := keyValue(reflect.ValueOf(new).Elem(), strings.Split(key, "."))
		if !reflect.DeepEqual(a, b) {
			out = append(out, key)
		}
	}
	sort.Strings(out)
	return out
}

func keyValue(v reflect.Value, path []string) (any, bool) {
	for _, p := range path {
		if v.Kind() != reflect.Struct {
			return nil, false
		}
		f, ok := tomlFields(v.Type())[p]
		if !ok {
			return nil, false
		}
		v = v.FieldByIndex(f.Index)
	}
	return v.Interface(), true
}

// Connections pgwarden keeps for itself: the [auth_query] pool, and the
// PostgreSQL store's pool and its LISTEN connection.
const (
	AuthQueryPoolConns = 2
	StorePoolConns     = 4
	storeListenConns   = 1
)

// OwnBackendConns is how many connections pgwarden keeps to the [backend]
// server for itself, beside its clients' backends: the [auth_query] pool's,
// and the PostgreSQL store's when the store is on that server: its port
// unset or the same, and its host unset or the same by HostKey (so a store
// at 127.0.0.1 counts against a backend at localhost or at a unix socket
// folder, one PostgreSQL commonly listening on all three).
// max_backend_connections counts them, so that pgwarden as a whole stays
// within it.
func (c *Config) OwnBackendConns() int {
	n := 0
	if c.AuthQuery != nil {
		n += AuthQueryPoolConns
	}
	st := c.Store
	host, port := st.Host, st.Port
	if host == "" {
		host = c.Backend.Host
	}
	if port == 0 {
		port = c.Backend.Port
	}
	if st.Kind == "postgres" && port == c.Backend.Port && HostKey(host) == HostKey(c.Backend.Host) {
		n += StorePoolConns + storeListenConns
	}
	return n
}

// HostKey is the form in which two backend hosts compare as one server:
// DNS names in any case, with or without the root's dot; an IP address
// however it is written (::ffff:10.0.0.5 and 10.0.0.5); and "local" for
// this machine (localhost, a loopback or unspecified address, a unix
// socket folder), since one PostgreSQL commonly listens on all of them.
// Two DNS names of one address are not recognised here (that takes a
// lookup).
func HostKey(h string) string {
	if strings.HasPrefix(h, "/") || strings.HasPrefix(h, "@") {
		return "local"
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return "local" // RFC 6761: always loopback
	}
	if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		ip = ip.Unmap().WithZone("")
		if ip.IsLoopback() || ip.IsUnspecified() { // Linux connects 0.0.0.0 to this machine
			return "local"
		}
		return ip.String()
	}
	return h
}

// Package snapshot assembles configuration, users and rules into one
// immutable value that a connection takes when it arrives and keeps to its
// end. Reload builds and validates a whole new snapshot, then swaps a
// pointer; if building fails, the old snapshot stays in force.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/certs"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/hba"
	"github.com/pgwarden/pgwarden/store"
)

// Snapshot is everything a connection needs to authenticate, fixed at one
// moment.
type Snapshot struct {
	Config *config.Config
	Users  *authcore.Users
	Auth   *authcore.Authenticator
	Rules  hba.Rules
	// TLS is nil when [tls] is absent.
	TLS    *certs.Material
	Tokens *authcore.Tokens
	// TrustedProxies may send PROXY headers and X-Forwarded-For.
	TrustedProxies []netip.Prefix
	Loaded         time.Time
	// Login is what the authcore.Gate decides against.
	Login *authcore.State

	// stop ends the snapshot's background work (JWKS refreshes) once a
	// newer snapshot replaces it.
	stop context.CancelFunc
	// loadPrint is the fingerprint of the watched files as LoadFrom read
	// them (zero for reloads and other loads): WatchFiles starts from it, so a file
	// changed between the load and the watcher's start is reloaded.
	loadPrint [32]byte
}

// TrustedProxy reports whether addr may send PROXY headers and
// X-Forwarded-For.
func (s *Snapshot) TrustedProxy(addr netip.Addr) bool {
	// A link-local peer's address carries its interface (fe80::1%eth0),
	// and netip never finds a zoned address in a prefix.
	addr = addr.Unmap().WithZone("")
	for _, p := range s.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Retire stops the snapshot's background work. Connections that still hold
// it keep working with what it already has.
func (s *Snapshot) Retire() {
	if s.stop != nil {
		s.stop()
	}
}

// Load reads the configuration at path and everything it names. Problems
// are gathered from every file before failing.
func Load(path string, limiter *authcore.HashLimiter) (*Snapshot, error) {
	return load(path, limiter, nil, false)
}

// LoadFrom is the server's first load: Load with the users read from src
// (an open store), or, when src is nil, from the store the configuration
// names, and the fingerprint of the files it read, which the file watch
// starts from (see loadPrint). Reloads need no fingerprint: the watch
// takes its own before each.
func LoadFrom(path string, limiter *authcore.HashLimiter, src store.Users) (*Snapshot, error) {
	return load(path, limiter, src, true)
}

func load(path string, limiter *authcore.HashLimiter, src store.Users, fingerprint bool) (*Snapshot, error) {
	// The fingerprint is of the configuration as it was parsed, and of
	// the other files as they are before they are read.
	cfg, configBytes, err := config.LoadData(path)
	if err != nil {
		if cfg == nil {
			return nil, err
		}
		// Report what else is wrong in the same run: the users file, the
		// rules, the certificates.
		return nil, errors.Join(append([]error{err}, checkFiles(cfg)...)...)
	}
	var print [32]byte
	if fingerprint {
		print = loadFingerprint(cfg, configBytes)
	}
	s, err := loadUsersAndBuild(cfg, limiter, src)
	if s != nil {
		s.loadPrint = print
	}
	return s, err
}

// loadUsersAndBuild builds a snapshot of cfg, with the users of src, of
// the store cfg names, or of the users file.
func loadUsersAndBuild(cfg *config.Config, limiter *authcore.HashLimiter, src store.Users) (*Snapshot, error) {
	if cfg.Store.Kind == "postgres" {
		if src == nil {
			st, err := store.Open(context.Background(), cfg)
			if err != nil {
				return nil, err
			}
			defer st.Close()
			src = st
		}
		users, err := src.Load(context.Background())
		if err != nil {
			return nil, err
		}
		return build(cfg, limiter, users)
	}
	return Build(cfg, limiter)
}

// checkFiles loads what a configuration with errors names, for their
// errors only: nothing that reaches the network.
func checkFiles(cfg *config.Config) []error {
	var errs []error
	if cfg.Store.Kind == "postgres" {
		// The users are in the store; reading it is not a file check.
	} else if _, err := os.Stat(cfg.Users.File); err != nil {
		errs = append(errs, cfg.FileError("users.file", cfg.Users.File, err))
	} else {
		if users, err := authcore.LoadUsers(cfg.Users.File); err != nil {
			errs = append(errs, err)
		} else if err := users.CheckHashCost(cfg.Users.File, authcore.HashLimitsOf(cfg)); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := LoadRules(cfg); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// Build loads what cfg names: the users file and the rules.
func Build(cfg *config.Config, limiter *authcore.HashLimiter) (*Snapshot, error) {
	return build(cfg, limiter, nil)
}

// build is Build with the users given, when they are, instead of read
// from the users file.
func build(cfg *config.Config, limiter *authcore.HashLimiter, users *authcore.Users) (*Snapshot, error) {
	var errs []error
	var err error
	if users == nil {
		if _, err = os.Stat(cfg.Users.File); err != nil {
			err = cfg.FileError("users.file", cfg.Users.File, err)
		} else {
			users, err = authcore.LoadUsers(cfg.Users.File)
		}
	}
	if err != nil {
		errs = append(errs, err)
	} else if err := users.CheckHashCost(cfg.Users.File, authcore.HashLimitsOf(cfg)); err != nil {
		errs = append(errs, err)
	}
	rules, err := LoadRules(cfg)
	if err != nil {
		errs = append(errs, err)
	}
	if err := backend.Validate(cfg); err != nil {
		errs = append(errs, err)
	}
	var tlsm *certs.Material
	if cfg.TLS != nil {
		if tlsm, err = certs.Load(cfg.TLS); err != nil {
			errs = append(errs, err)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	var aq *backend.AuthQuery
	if cfg.AuthQuery != nil && users != nil {
		if aq, err = backend.NewAuthQuery(cfg); err != nil {
			errs = append(errs, err)
		} else {
			// The pool goes when the snapshot is retired.
			context.AfterFunc(ctx, aq.Close)
		}
	}
	var tokens *authcore.Tokens
	if users != nil {
		if tokens, err = authcore.NewTokens(cfg, users, jwksSets); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		stop()
		return nil, errors.Join(errs...)
	}
	auth := authcore.NewAuthenticator(users, limiter).WithHashLimits(authcore.HashLimitsOf(cfg))
	if aq != nil {
		auth.WithExternal(aq)
	}
	var proxies []netip.Prefix
	for _, p := range cfg.Server.TrustedProxies {
		if pr, err := config.ParsePrefix(p); err == nil {
			proxies = append(proxies, pr)
		}
	}
	login := &authcore.State{Rules: rules, Users: users, Auth: auth, Tokens: tokens,
		FailureDelay: cfg.Throttle.FailureDelay.Duration, MaxDelay: cfg.Throttle.MaxDelay.Duration}
	return &Snapshot{
		Login:          login,
		TrustedProxies: proxies,
		stop:           stop,
		Tokens:         tokens,
		TLS:            tlsm,
		Config:         cfg,
		Users:          users,
		Auth:           auth,
		Rules:          rules,
		Loaded:         time.Now(),
	}, nil
}

// Warnings is what loads but should not stay so: the configuration's own
// (see config.Config.Warnings), rules that let clients of other machines
// in without a credential or take their credentials in clear text (see
// trustForEveryone, credentialsInClear), and "+role" or "samerole" entries
// that cannot mean what they mean in PostgreSQL for every name they may
// meet.
func (s *Snapshot) Warnings() []string {
	out := append(s.Config.Warnings(), trustForEveryone(s.Config, s.Rules)...)
	out = append(out, credentialsInClear(s.Config, s.Rules)...)
	if s.Config.AuthQuery != nil {
		return out
	}
	unlisted := slices.ContainsFunc(s.Rules, func(r *hba.Rule) bool {
		switch r.Method {
		case hba.Trust, hba.Cert, hba.Peer, hba.JWT, hba.OAuth:
			return true
		}
		return false
	})
	if !unlisted {
		return out
	}
	for _, r := range s.Rules.UsesRoles() {
		out = append(out, fmt.Sprintf("rule %d (%s) matches users by role (+role or samerole): pgwarden reads the roles of the users file, and a name the file does not hold (let in by a trust, cert, peer, jwt or oauth rule) holds no role but its own here, even one it is granted in PostgreSQL; with [auth_query] they are read from PostgreSQL at each login", r.Number, r.Source))
	}
	return out
}

// trustForEveryone warns of each trust rule that matches every address
// where clients from off this machine can reach its protocol: a listener
// on an address other than loopback, or trusted proxies that name remote
// clients. Such a rule lets anyone in as any user, with no credential;
// PostgreSQL's initdb warns of trust for that reason, and a rule written
// without an address list, which means every address, does it unnoticed.
func trustForEveryone(cfg *config.Config, rules hba.Rules) []string {
	var out []string
	for _, r := range rules {
		if r.Method != hba.Trust || !r.MatchesEveryAddress() {
			continue
		}
		var reach []string
		if r.Protocol != hba.ProtoHTTP {
			reach = append(reach, remoteListeners("server.pg_listen", cfg.Server.PGListen)...)
		}
		if r.Protocol != hba.ProtoPG {
			reach = append(reach, remoteListeners("server.http_listen", cfg.Server.HTTPListen)...)
		}
		if len(cfg.Server.TrustedProxies) > 0 && (r.Protocol != hba.ProtoPG || cfg.Server.ProxyProtocol != "off") {
			reach = append(reach, "the proxies of server.trusted_proxies")
		}
		if len(reach) == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("rule %d (%s) is trust for every address, and clients of other machines reach it through %s: any of them logs in as whichever user it names, with no credential; list the addresses that may (address = [...]) or use a method that asks for a credential",
			r.Number, r.Source, strings.Join(reach, " and ")))
	}
	return out
}

// credentialsInClear warns of each rule under which clients of other
// machines hand over a reusable secret on a connection without TLS: a
// password or a token in a wire PasswordMessage (methods password and
// jwt; SCRAM proves a password without sending it), and any HTTP
// credential (Basic sends the password, Bearer the token) while
// server.http_tls is off. Whoever can read the network path can log in
// with it. The web console already refuses plain HTTP from other machines
// for this reason.
func credentialsInClear(cfg *config.Config, rules hba.Rules) []string {
	var out []string
	for _, r := range rules {
		if r.SSL == hba.SSLOn || !r.MatchesRemoteAddresses() {
			continue
		}
		var via []string
		if r.Protocol != hba.ProtoHTTP && (r.Method == hba.Password || r.Method == hba.JWT) {
			if l := remoteListeners("server.pg_listen", cfg.Server.PGListen); len(l) > 0 {
				via = append(via, fmt.Sprintf("the password message of method %s (through %s)", r.Method, strings.Join(l, ", ")))
			}
		}
		// Behind trusted proxies, a proxy that terminates TLS is taken to
		// be in front (the usual way to publish HTTP), as the console
		// takes X-Forwarded-Proto.
		if r.Protocol != hba.ProtoPG && !cfg.Server.HTTPTLS && len(cfg.Server.TrustedProxies) == 0 && (r.Method.ProvesPassword() || r.Method == hba.JWT) {
			if l := remoteListeners("server.http_listen", cfg.Server.HTTPListen); len(l) > 0 {
				via = append(via, fmt.Sprintf("HTTP Basic passwords and bearer tokens (through %s, server.http_tls off)", strings.Join(l, ", ")))
			}
		}
		if len(via) == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("rule %d (%s) takes credentials in clear text from clients of other machines: %s; anyone who can read the network path can log in with them; serve TLS and require it (ssl = \"on\", hostssl, server.http_tls), or use scram-sha-256 on the wire",
			r.Number, r.Source, strings.Join(via, " and ")))
	}
	return out
}

// remoteListeners names the listen addresses of key that clients on other
// machines can reach: any but loopback addresses and localhost.
func remoteListeners(key string, addrs []string) []string {
	var out []string
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			host = a
		}
		if ip, err := netip.ParseAddr(host); (err == nil && ip.Unmap().IsLoopback()) || strings.EqualFold(host, "localhost") {
			continue
		}
		out = append(out, fmt.Sprintf("%s %q", key, a))
	}
	return out
}

// LoadRules normalizes the [[hba]] rules of cfg, followed by those of its
// hba_file.
func LoadRules(cfg *config.Config) (hba.Rules, error) {
	env := hba.Env{
		TLS:      cfg.TLS != nil,
		ClientCA: cfg.TLS != nil && cfg.TLS.ClientCAFile != "",
		JWT:      len(cfg.JWTIssuers) > 0 || cfg.TokensSet,
	}
	for _, j := range cfg.JWTIssuers {
		env.Issuers = append(env.Issuers, j.Issuer)
	}
	if cfg.TokensSet {
		env.Issuers = append(env.Issuers, cfg.Tokens.Issuer)
	}
	rules, err := hba.FromConfig(cfg, env)
	if err != nil {
		return nil, err
	}
	if cfg.HBAFile != "" {
		more, err := hba.LoadFile(cfg.HBAFile, env)
		if err != nil {
			return nil, err
		}
		rules = rules.Append(more)
	}
	if len(rules) == 0 {
		return nil, &config.Error{File: cfg.Path, Key: "hba", Msg: "there are no HBA rules"}
	}
	return rules, nil
}

// Holder keeps the current snapshot and replaces it on reload.
type Holder struct {
	path    string
	limiter *authcore.HashLimiter
	cur     atomic.Pointer[Snapshot]
	mu      sync.Mutex // one reload at a time
	// Users is where reloads read users and UpdateUsers writes them; nil
	// is the users file of the configuration in force.
	Users store.Users
	// OnReload, when set before the first Reload, is called after each
	// reload with the snapshot it replaced and the new one, to end the
	// sessions whose login the new one revokes: a change that reaches
	// this instance by a reload (the file watch, the store's NOTIFY,
	// SIGHUP, RELOAD) revokes as one made on it does. UpdateUsers does not
	// call it: its callers end the sessions themselves, sparing the
	// session that made the change.
	OnReload func(old, next *Snapshot)
	// OnUpdate, when set before the first UpdateUsers, is called after
	// each one with the new snapshot and the users whose login a change
	// found in the store revoked: one made elsewhere (pgwarden user
	// passwd, another instance, an edited file) that no reload had
	// brought yet. The update puts that change in force with its own, so
	// the reload that follows finds nothing new and would end none of
	// their sessions; this ends them instead.
	OnUpdate func(next *Snapshot, revoked []string)
}

// NewHolder serves first, reloading from path.
func NewHolder(path string, first *Snapshot, limiter *authcore.HashLimiter) *Holder {
	h := &Holder{path: path, limiter: limiter}
	h.cur.Store(first)
	return h
}

// Current returns the snapshot in force.
func (h *Holder) Current() *Snapshot { return h.cur.Load() }

// Reload re-reads everything; on error the old snapshot stays.
func (h *Holder) Reload() (*Snapshot, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, err := load(h.path, h.limiter, h.Users, false)
	if err != nil {
		return nil, err
	}
	old := h.cur.Swap(s)
	old.Retire()
	jwksSets.Keep(s.Config)
	if h.OnReload != nil {
		h.OnReload(old, s)
	}
	return s, nil
}

// SetUnavailable puts in force the current snapshot refusing every login
// with reason (the shared user store is out of reach); the next successful
// Reload ends it.
func (h *Holder) SetUnavailable(reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := h.Current()
	if cur.Login.Unavailable != "" {
		return
	}
	s := *cur
	login := *cur.Login
	login.Unavailable = reason
	s.Login = &login
	// The copy shares cur's background work, retired with it later.
	h.cur.Store(&s)
}

// UpdateUsers changes the users file and puts the change in force, all or
// nothing: the new state is built in memory from the configuration in force
// and the new users first (a config file that no longer loads does not
// matter; a users file the server could not serve is refused), then the
// file is written, then the new snapshot swapped in. On any error nothing
// changed, on disk or in memory.
func (h *Holder) UpdateUsers(change func([]*authcore.User) ([]*authcore.User, error)) (*Snapshot, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := h.Current()
	var next *Snapshot
	if cur.Login.Unavailable != "" {
		return nil, errors.New(cur.Login.Unavailable)
	}
	var src store.Users = store.File{Path: cur.Config.Users.File}
	if h.Users != nil {
		src = h.Users
	}
	// build sets what it derives from the configuration (backend.Validate:
	// the TLS digest, the entries taken for the default server) on the one
	// it is given: a copy here, never the one in force, which sessions read
	// as they route.
	cfg := *cur.Config
	cfg.Databases = slices.Clone(cur.Config.Databases)
	var found []string
	err := src.Update(context.Background(), func(list []*authcore.User) ([]*authcore.User, error) {
		// Before change runs: it may edit the entries in place.
		if users, err := authcore.NewUsers(list); err == nil {
			found = authcore.Revoked(cur.Users, users, time.Now())
		}
		return change(list)
	}, func(users *authcore.Users) error {
		s, err := build(&cfg, h.limiter, users)
		next = s
		return err
	})
	if err != nil {
		if next != nil {
			next.Retire()
		}
		return nil, err
	}
	old := h.cur.Swap(next)
	old.Retire()
	if h.OnUpdate != nil {
		h.OnUpdate(next, found)
	}
	return next, nil
}

// jwksSets keeps the identity providers' key sets from one load to the
// next (see authcore.JWKS): one process, one store.
var jwksSets = authcore.NewJWKS(jwksClient)

// SetJWKSLogger sends the key sets' failed fetches to log.
func SetJWKSLogger(log *zap.Logger) { jwksSets.SetLogger(log) }

// jwksClient fetches JWKS documents: bounded in time, and never following a
// redirect to somewhere the configuration did not name.
var jwksClient = &http.Client{
	Timeout: 10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

package hba

import (
	"fmt"
	"strings"

	"github.com/pgwarden/pgwarden/config"
)

// Env is what the rest of the configuration offers the rules: whether TLS
// is configured, whether a client CA is, and whether any token can be
// verified.
type Env struct {
	TLS      bool
	ClientCA bool
	JWT      bool
	// Issuers are the issuers tokens can be verified for: every
	// [[jwt_issuers]] entry, and tokens.issuer when [tokens] is written.
	Issuers []string
}

// FromConfig normalizes the [[hba]] blocks of cfg. Errors name the file, the
// block's line and the key.
func FromConfig(cfg *config.Config, env Env) (Rules, error) {
	var errs config.Errors
	rules := make(Rules, 0, len(cfg.HBA))
	for i, c := range cfg.HBA {
		rule, es := normalize(c, env, fmt.Sprintf("hba[%d]", i+1))
		for _, e := range es {
			e.File, e.Line = cfg.Path, c.Line
		}
		errs = append(errs, es...)
		if rule != nil {
			rule.Number = len(rules) + 1
			rule.Source = fmt.Sprintf("%s:%d", cfg.Path, c.Line)
			rules = append(rules, rule)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return rules, nil
}

func normalize(c config.HBARule, env Env, key string) (*Rule, config.Errors) {
	var errs config.Errors
	bad := func(field, format string, args ...any) {
		errs = append(errs, &config.Error{Key: key + "." + field, Msg: fmt.Sprintf(format, args...)})
	}
	r := &Rule{Protocol: Protocol(c.Protocol), SSL: SSLMode(c.SSL), Method: Method(c.Method), ClientCert: c.ClientCert,
		Issuer: c.Issuer, Scope: c.Scope}
	switch r.Protocol {
	case ProtoAll, ProtoPG, ProtoHTTP:
	default:
		bad("protocol", "must be pg, http or all, not %q", c.Protocol)
	}
	switch r.SSL {
	case SSLAny, SSLOn, SSLOff:
	default:
		bad("ssl", "must be on, off or any, not %q", c.SSL)
	}
	if len(c.Address) == 0 {
		bad("address", "must list at least one address")
	}
	for _, a := range c.Address {
		p, err := parseAddr(a, false)
		if err != nil {
			bad("address", "%v", err)
			continue
		}
		r.Addresses = append(r.Addresses, p)
	}
	if len(c.Database) == 0 {
		bad("database", "must list at least one database")
	}
	for _, d := range c.Database {
		p, err := parseDatabase(d, false)
		if err != nil {
			bad("database", "%v", err)
			continue
		}
		r.Databases = append(r.Databases, p)
	}
	if len(c.User) == 0 {
		bad("user", "must list at least one user")
	}
	for _, u := range c.User {
		p, err := parseUser(u, false)
		if err != nil {
			bad("user", "%v", err)
			continue
		}
		r.Users = append(r.Users, p)
	}
	if c.Method == "" {
		bad("method", "is required")
	} else if err := r.checkMethod(env); err != "" {
		bad("method", "%s", err)
	}
	switch c.ClientCert {
	case "":
	case "verify-ca", "verify-full":
		if !env.TLS || !env.ClientCA {
			bad("clientcert", "needs [tls] with client_ca_file")
		}
	default:
		bad("clientcert", "must be verify-ca or verify-full, not %q", c.ClientCert)
	}
	if r.SSL == SSLOn && !env.TLS {
		bad("ssl", "ssl = \"on\" needs a [tls] section")
	}
	if msg := r.checkOAuth(env); msg != "" {
		field := "issuer"
		if r.SSL == SSLOff {
			field = "ssl"
		}
		bad(field, "%s", msg)
	}
	if r.Method != OAuth && (c.Issuer != "" || c.Scope != "") {
		bad("issuer", "issuer and scope are options of method oauth only")
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}

// checkMethod tests the rule against the method table; "" means fine.
func (r *Rule) checkMethod(env Env) string {
	info, ok := methods[r.Method]
	if !ok {
		names := make([]string, 0, len(methods))
		for m := range methods {
			names = append(names, string(m))
		}
		if s := config.Suggest(string(r.Method), names); s != "" {
			return fmt.Sprintf("unknown method %q; did you mean %s? (the methods are trust, reject, password, scram-sha-256, md5, cert, jwt, oauth and peer)", r.Method, s)
		}
		return fmt.Sprintf("unknown method %q; write one of trust, reject, password, scram-sha-256, md5, cert, jwt, oauth or peer", r.Method)
	}
	switch {
	case info.missing != "":
		return fmt.Sprintf("method %s is not available: %s", r.Method, info.missing)
	case r.Protocol == ProtoHTTP && !info.http:
		return fmt.Sprintf("method %s is not allowed for protocol http", r.Method)
	case r.Protocol == ProtoAll && !info.http:
		return fmt.Sprintf("method %s works on the Postgres wire only: set protocol = \"pg\"", r.Method)
	case info.tlsOnly && !env.TLS:
		return fmt.Sprintf("method %s needs a [tls] section: it serves TLS connections only", r.Method)
	case info.needsTLS && !env.TLS:
		return fmt.Sprintf("method %s needs a [tls] section", r.Method)
	case info.needsTLS && !env.ClientCA:
		return fmt.Sprintf("method %s needs tls.client_ca_file", r.Method)
	case r.Method == JWT && !env.JWT:
		return "method jwt needs [[jwt_issuers]] or a [tokens] section"
	case info.localOnly:
		for _, a := range r.Addresses {
			if a.kind != addrLocal {
				return fmt.Sprintf("method %s works on the unix socket only: set address = \"local\"", r.Method)
			}
		}
	}
	return ""
}

// checkOAuth checks method oauth's options and makes the rule match TLS
// connections only; "" means fine.
func (r *Rule) checkOAuth(env Env) string {
	if r.Method != OAuth {
		return ""
	}
	switch r.SSL {
	case SSLOff:
		return "method oauth carries a bearer token, a secret: it cannot serve ssl = \"off\""
	case SSLAny:
		r.SSL = SSLOn
	}
	if r.Issuer == "" {
		return "method oauth needs issuer = one of [[jwt_issuers]] (or tokens.issuer)"
	}
	for _, i := range env.Issuers {
		if i == r.Issuer {
			return ""
		}
	}
	return fmt.Sprintf("method oauth: issuer %q is neither a [[jwt_issuers]] entry nor tokens.issuer of a written [tokens] section", r.Issuer)
}

// parseAddr reads one address entry. In pg_hba.conf syntax "all" means every
// TCP address; in TOML rules it also covers the unix socket.
func parseAddr(s string, pgHBA bool) (AddrPattern, error) {
	switch s {
	case "all":
		if pgHBA {
			return AddrPattern{kind: addrAnyIP, text: s}, nil
		}
		return AddrPattern{kind: addrAny, text: s}, nil
	case "local":
		return AddrPattern{kind: addrLocal, text: s}, nil
	}
	p, err := config.ParsePrefix(s)
	if err != nil {
		return AddrPattern{}, fmt.Errorf("address %q is not a CIDR, an IP address, \"all\" or \"local\"", s)
	}
	return AddrPattern{kind: addrPrefix, prefix: p, text: p.String()}, nil
}

// parseUser reads one user entry; quoted means the pg_hba.conf token was in
// double quotes, which makes keywords literal names.
func parseUser(s string, quoted bool) (NamePattern, error) {
	if s == "" {
		return NamePattern{}, fmt.Errorf("empty user name")
	}
	if strings.HasPrefix(s, "/") {
		return regexName(s)
	}
	if quoted {
		return NamePattern{kind: nameLiteral, name: s, text: quote(s)}, nil
	}
	switch {
	case s == "all":
		return NamePattern{kind: nameAll, text: s}, nil
	case s == "+":
		// PostgreSQL looks for membership in a role named "" and so
		// matches no one; pgwarden took it for a user named "+". A
		// rule should say what it means: quote it ("+") for that user.
		return NamePattern{}, fmt.Errorf(`"+" names no role (write +role for the members of a role; in pg_hba.conf, a quoted "+" is a user named +)`)
	case strings.HasPrefix(s, "+"):
		return NamePattern{kind: nameRole, name: s[1:], text: s}, nil
	}
	return literalName(s), nil
}

func parseDatabase(s string, quoted bool) (NamePattern, error) {
	if s == "" {
		return NamePattern{}, fmt.Errorf("empty database name")
	}
	if strings.HasPrefix(s, "/") {
		return regexName(s)
	}
	if quoted {
		return NamePattern{kind: nameLiteral, name: s, text: quote(s)}, nil
	}
	switch {
	case s == "all":
		return NamePattern{kind: nameAll, text: s}, nil
	case s == "replication":
		return NamePattern{kind: nameReplication, text: s}, nil
	case s == "sameuser":
		return NamePattern{kind: nameSameUser, text: s}, nil
	case s == "samerole" || s == "samegroup":
		return NamePattern{kind: nameSameRole, text: s}, nil
	}
	return literalName(s), nil
}

// regexName reads a name that starts with a slash: a regular expression,
// quoted or not. Quotes make keywords and +role literal, but PostgreSQL 16
// compiles every name that starts with a slash (regcomp_auth_token looks
// at the text alone), and its documentation quotes a regular expression
// that holds a comma ("/^db\d{2,4}$"). pgwarden took a quoted one for a
// literal name that no user has, so a reject rule written that way
// stopped no one.
func regexName(s string) (NamePattern, error) {
	re, err := compileRegex(s[1:])
	if err != nil {
		return NamePattern{}, err
	}
	text := s
	if strings.ContainsAny(s, " \t\r,#\"") {
		text = quote(s) // as PostgreSQL's documentation writes it
	}
	return NamePattern{kind: nameRegex, re: re, text: text}, nil
}

// literalName is an unquoted name taken as written; shown quoted when it
// holds what the tokenizer splits on (a quote mid-token can put a space
// in: 0" " is the name "0 ").
func literalName(s string) NamePattern {
	text := s
	if strings.ContainsAny(s, " \t\r,#\"") {
		text = quote(s)
	}
	return NamePattern{kind: nameLiteral, name: s, text: text}
}

func quote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

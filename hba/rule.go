// Package hba decides, from who is connecting and how, which method must
// prove a client's identity. It knows nothing of sockets or HTTP: frontends
// describe a connection as a Request and get back the first matching Rule.
//
// Rules go through three stages, after CockroachDB's hba package: decode
// (TOML [[hba]] blocks or pg_hba.conf lines), normalize (parse CIDRs, compile
// regexes, check methods against the method table, keep the rule's number and
// source), and match.
package hba

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Protocol names a frontend.
type Protocol string

// Protocols a rule may be limited to.
const (
	ProtoAll  Protocol = "all"
	ProtoPG   Protocol = "pg"
	ProtoHTTP Protocol = "http"
)

// SSLMode is a rule's requirement on transport encryption.
type SSLMode string

// SSL requirements: on (TLS required), off (TLS refused), any.
const (
	SSLAny SSLMode = "any"
	SSLOn  SSLMode = "on"
	SSLOff SSLMode = "off"
	// SSLGSSEnc is pg_hba.conf's hostgssenc: GSSAPI-encrypted connections
	// only, which pgwarden never has (it answers GSSENCRequest 'N'), so
	// such a rule matches nothing, as in a PostgreSQL whose clients never
	// encrypt with GSSAPI.
	SSLGSSEnc SSLMode = "gssenc"
)

// Rule is one normalized HBA rule.
type Rule struct {
	// Number is the rule's 1-based position in the combined list.
	Number int
	// Source is "file:line" of where the rule was written.
	Source     string
	Protocol   Protocol
	Addresses  []AddrPattern
	SSL        SSLMode
	Databases  []NamePattern
	Users      []NamePattern
	Method     Method
	ClientCert string // "", "verify-ca" or "verify-full"
	// Issuer and Scope are method oauth's options (as in PostgreSQL's
	// pg_hba.conf): whose tokens the rule takes, and the scope a client
	// is told to ask for.
	Issuer, Scope string
}

type addrKind int

const (
	addrAny   addrKind = iota // every client, the unix socket included
	addrAnyIP                 // every TCP client (pg_hba.conf "host ... all")
	addrLocal                 // the unix socket only
	addrPrefix
)

// AddrPattern is one entry of a rule's address list.
type AddrPattern struct {
	kind   addrKind
	prefix netip.Prefix
	text   string
}

func (a AddrPattern) String() string {
	if a.kind == addrAnyIP {
		// Printed apart from a TOML rule's "all", which covers the unix
		// socket too: the rule table and explain must show the difference.
		return "all-tcp"
	}
	return a.text
}

func (a AddrPattern) match(r *Request) bool {
	switch a.kind {
	case addrAny:
		return true
	case addrAnyIP:
		return !r.Local
	case addrLocal:
		return r.Local
	default:
		// Without its zone: netip's Contains never matches a zoned
		// address, so a link-local client (fe80::1%eth0) slipped past
		// every address rule to the "all" ones. PostgreSQL compares the
		// address bytes alone.
		return !r.Local && a.prefix.Contains(r.Addr.Unmap().WithZone(""))
	}
}

// MatchesEveryAddress says whether the rule matches TCP clients whatever
// their address: "all" (TOML or pg_hba.conf), or a /0 prefix of either
// family. A hostgssenc rule matches no client at all.
func (r *Rule) MatchesEveryAddress() bool {
	return r.SSL != SSLGSSEnc && slices.ContainsFunc(r.Addresses, func(a AddrPattern) bool {
		return a.kind == addrAny || a.kind == addrAnyIP || (a.kind == addrPrefix && a.prefix.Bits() == 0)
	})
}

// loopbackV4 is IPv4's loopback network.
var loopbackV4 = netip.MustParsePrefix("127.0.0.0/8")

// MatchesRemoteAddresses says whether the rule can match a TCP client of
// another machine: an address entry other than loopback or the unix
// socket, on a rule other than hostgssenc, which matches no client.
func (r *Rule) MatchesRemoteAddresses() bool {
	return r.SSL != SSLGSSEnc && slices.ContainsFunc(r.Addresses, func(a AddrPattern) bool {
		switch a.kind {
		case addrAny, addrAnyIP:
			return true
		case addrPrefix:
			p := a.prefix
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			return !(p.Addr().Is4() && p.Bits() >= 8 && loopbackV4.Contains(p.Addr())) && !(p.Bits() == 128 && p.Addr().IsLoopback())
		}
		return false
	})
}

type nameKind int

const (
	nameAll nameKind = iota
	nameLiteral
	nameRole        // +role: users holding the role
	nameRegex       // /regex
	nameSameUser    // database named like the user
	nameSameRole    // database named like a role the user holds
	nameReplication // the replication pseudo-database
)

// NamePattern is one entry of a rule's user or database list.
type NamePattern struct {
	kind nameKind
	name string
	re   nameRegexp
	text string
}

func (n NamePattern) String() string { return n.text }

// Request describes one connection or HTTP request to be matched.
type Request struct {
	Protocol Protocol
	// Addr is the client's address; ignored when Local.
	Addr  netip.Addr
	Local bool
	SSL   bool
	// Database is the requested database; for a physical replication
	// connection it is ignored and only "replication" entries match.
	Database    string
	User        string
	Replication bool
	// Roles are the roles the user holds: the users file's, or for a
	// name found through [auth_query], its PostgreSQL memberships.
	Roles []string

	// anyRole makes the user hold every role (see NeedsRoles).
	anyRole bool
}

// AddrString renders the client address as PostgreSQL does in its messages.
func (r *Request) AddrString() string {
	return AddrText(r.Addr, r.Local)
}

// AddrText names a client in refusals and logs: "[local]" for the unix
// socket, "unknown" for a client a proxy forwarded without naming it (the
// zero Addr; see the frontends' PROXY and X-Forwarded-For handling), else
// its address.
func AddrText(addr netip.Addr, local bool) string {
	switch {
	case local:
		return "[local]"
	case !addr.IsValid():
		return "unknown"
	}
	return addr.Unmap().String()
}

func (r *Request) hasRole(role string) bool {
	if role == r.User || r.anyRole {
		return true // as in PostgreSQL, a role is a member of itself
	}
	for _, have := range r.Roles {
		if have == role {
			return true
		}
	}
	return false
}

func (p NamePattern) matchUser(r *Request) bool {
	switch p.kind {
	case nameAll:
		return true
	case nameLiteral:
		return p.name == r.User
	case nameRole:
		return r.hasRole(p.name)
	case nameRegex:
		return p.re.MatchString(r.User)
	}
	return false
}

func (p NamePattern) matchDatabase(r *Request) bool {
	if r.Replication {
		// PostgreSQL: a physical replication connection matches only the
		// replication keyword; "all" and names do not.
		return p.kind == nameReplication
	}
	switch p.kind {
	case nameAll:
		return true
	case nameLiteral:
		return p.name == r.Database
	case nameRegex:
		return p.re.MatchString(r.Database)
	case nameSameUser:
		return r.Database == r.User
	case nameSameRole:
		return r.hasRole(r.Database)
	}
	return false
}

// Miss says why one rule did not match.
type Miss struct {
	Rule   *Rule
	Reason string
}

// field names what part of a rule failed to match; 0 means it matched.
type field int

const (
	matched field = iota
	badProtocol
	badAddress
	badSSLOn
	badSSLOff
	badGSSEnc
	badDatabase
	badUser
)

// mismatch returns the first field of the rule that r does not match. It
// allocates nothing: Match runs it for every rule on every connection.
func (rule *Rule) mismatch(r *Request) field {
	if rule.Protocol != ProtoAll && rule.Protocol != r.Protocol {
		return badProtocol
	}
	if !anyAddr(rule.Addresses, r) {
		return badAddress
	}
	switch {
	case rule.SSL == SSLOn && !r.SSL:
		return badSSLOn
	case rule.SSL == SSLOff && r.SSL:
		return badSSLOff
	case rule.SSL == SSLGSSEnc:
		return badGSSEnc
	}
	dbOK := false
	for _, p := range rule.Databases {
		if p.matchDatabase(r) {
			dbOK = true
			break
		}
	}
	if !dbOK {
		return badDatabase
	}
	for _, p := range rule.Users {
		if p.matchUser(r) {
			return matched
		}
	}
	return badUser
}

// why says in words why the rule does not match r ("" when it does).
func (rule *Rule) why(r *Request) string {
	switch rule.mismatch(r) {
	case badProtocol:
		return fmt.Sprintf("protocol is %s, not %s", r.Protocol, rule.Protocol)
	case badAddress:
		return fmt.Sprintf("address %s is not in %s", r.AddrString(), joinPatterns(rule.Addresses))
	case badSSLOn:
		return "connection is not SSL, rule requires ssl on"
	case badSSLOff:
		return "connection is SSL, rule requires ssl off"
	case badGSSEnc:
		return "connection is not GSSAPI-encrypted (pgwarden offers no GSSAPI encryption), rule is hostgssenc"
	case badDatabase:
		if r.Replication {
			return fmt.Sprintf("replication connection, database list %s lacks replication", joinPatterns(rule.Databases))
		}
		return fmt.Sprintf("database %q is not in %s", r.Database, joinPatterns(rule.Databases))
	case badUser:
		return fmt.Sprintf("user %q is not in %s", r.User, joinPatterns(rule.Users))
	}
	return ""
}

func anyAddr(list []AddrPattern, r *Request) bool {
	for _, a := range list {
		if a.match(r) {
			return true
		}
	}
	return false
}

func joinPatterns[T fmt.Stringer](ps []T) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// Rules is an ordered, normalized rule list.
type Rules []*Rule

// Match returns the first rule that matches r, or nil: no match rejects.
func (rs Rules) Match(r *Request) *Rule {
	for _, rule := range rs {
		if rule.mismatch(r) == matched {
			return rule
		}
	}
	return nil
}

// NeedsRoles says whether the rule r matches could depend on roles its
// user holds besides its own name: before the first rule that matches r
// without them, one rule would match if the user held some role (a
// "+role" user or a "samerole" database). Roles only ever add matches, so
// when none does, Match decides r without knowing them.
func (rs Rules) NeedsRoles(r *Request) bool {
	every := *r
	every.anyRole = true
	for _, rule := range rs {
		if rule.mismatch(r) == matched {
			return false
		}
		if rule.mismatch(&every) == matched {
			return true
		}
	}
	return false
}

// UsesRoles lists the rules that match a user by a role it holds besides
// its own name: a "+role" user entry or a "samerole" database entry.
func (rs Rules) UsesRoles() []*Rule {
	var out []*Rule
	for _, rule := range rs {
		uses := slices.ContainsFunc(rule.Users, func(p NamePattern) bool { return p.kind == nameRole }) ||
			slices.ContainsFunc(rule.Databases, func(p NamePattern) bool { return p.kind == nameSameRole })
		if uses {
			out = append(out, rule)
		}
	}
	return out
}

// Explain is Match that also says why each earlier rule did not match.
func (rs Rules) Explain(r *Request) (*Rule, []Miss) {
	var misses []Miss
	for _, rule := range rs {
		reason := rule.why(r)
		if reason == "" {
			return rule, misses
		}
		misses = append(misses, Miss{Rule: rule, Reason: reason})
	}
	return nil, misses
}

// NoRuleMessage is what a client is told when no rule matches r, the same
// on both protocols.
func (r *Request) NoRuleMessage() string {
	return fmt.Sprintf("no HBA rule for host %q, user %q, database %q, %s", r.AddrString(), r.User, r.Database, sslWord(r.SSL))
}

// RejectMessage is what a client is told when the matching rule's method
// is reject.
func (r *Request) RejectMessage() string {
	return fmt.Sprintf("HBA rejects connection for host %q, user %q, database %q, %s", r.AddrString(), r.User, r.Database, sslWord(r.SSL))
}

func sslWord(ssl bool) string {
	if ssl {
		return "SSL on"
	}
	return "SSL off"
}

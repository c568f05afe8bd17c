package hba

import (
	"bufio"
	"bytes"
	"fmt"
	"math/bits"
	"net/netip"
	"os"
	"strings"

	"github.com/pgwarden/pgwarden/config"
)

// Append adds more rules after rs, numbering them on.
func (rs Rules) Append(more Rules) Rules {
	out := append(Rules(nil), rs...)
	for _, r := range more {
		c := *r
		c.Number = len(out) + 1
		out = append(out, &c)
	}
	return out
}

// LoadFile reads a PostgreSQL pg_hba.conf file. Its rules serve protocol
// "pg". A line pgwarden cannot honour fails the whole load with its line
// number: silently skipping a line would change who gets in.
func LoadFile(path string, env Env) (Rules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if pe, ok := err.(*os.PathError); ok {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return ParseFile(path, data, env)
}

// ParseFile parses pg_hba.conf content read from path.
func ParseFile(path string, data []byte, env Env) (Rules, error) {
	var rules Rules
	var errs config.Errors
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	lineNo, startLine := 0, 0
	var pending strings.Builder
	continued := false
	for {
		more := sc.Scan()
		if !more && !continued {
			break
		}
		var text string
		if more {
			lineNo++
			text = sc.Text()
			if !continued {
				startLine = lineNo
			}
			// A backslash at the end of a line continues it with the
			// next line, joined as it is, without a space (PostgreSQL
			// 16's tokenize_auth_file): "ad\" then "min" is admin.
			if strings.HasSuffix(text, `\`) {
				pending.WriteString(strings.TrimSuffix(text, `\`))
				continued = true
				continue
			}
		}
		// The file's end also ends a continued line, which PostgreSQL
		// reads as it stands.
		continued = false
		pending.WriteString(text)
		line := pending.String()
		pending.Reset()
		fields, err := tokenize(line)
		if err == nil && len(fields) > 0 {
			var rule *Rule
			rule, err = parseLine(fields, env)
			if err == nil {
				rule.Number = len(rules) + 1
				rule.Source = fmt.Sprintf("%s:%d", path, startLine)
				rules = append(rules, rule)
			}
		}
		if err != nil {
			errs = append(errs, &config.Error{File: path, Line: startLine, Msg: err.Error()})
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, &config.Error{File: path, Line: lineNo + 1, Msg: err.Error()})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return rules, nil
}

// token is one list item of a field; quoted tokens never act as keywords.
type token struct {
	text   string
	quoted bool
}

// tokenize splits a line into fields, each a comma-separated list of
// tokens. Whitespace may surround commas ("user1,user2 , user3" is one
// field, as PgBouncer reads it); double quotes protect spaces, commas and
// '#', and "" inside quotes is a literal quote.
func tokenize(line string) ([][]token, error) {
	var fields [][]token
	var cur []token
	wantMore := false // the last thing seen was a comma
	i := 0
	for i < len(line) {
		c := line[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			i = len(line)
		case c == ',':
			if len(cur) == 0 || wantMore {
				return nil, fmt.Errorf("empty list entry near %q", line[i:])
			}
			wantMore = true
			i++
		default:
			var b strings.Builder
			// Quoted means it starts with a quote, as PostgreSQL's
			// next_token has it (initial_quote): +"admins" is the group
			// admins and al"l" the keyword all, in PostgreSQL as here.
			quoted, inQuote := line[i] == '"', false
			for i < len(line) {
				c := line[i]
				if inQuote {
					if c == '"' {
						if i+1 < len(line) && line[i+1] == '"' {
							b.WriteByte('"')
							i += 2
							continue
						}
						inQuote = false
						i++
						continue
					}
					b.WriteByte(c)
					i++
					continue
				}
				if c == ' ' || c == '\t' || c == '\r' || c == ',' || c == '#' {
					break
				}
				if c == '"' {
					inQuote = true
					i++
					continue
				}
				b.WriteByte(c)
				i++
			}
			if inQuote {
				return nil, fmt.Errorf("unterminated quoted string")
			}
			t := token{text: b.String(), quoted: quoted}
			if len(cur) > 0 && !wantMore {
				fields = append(fields, cur)
				cur = nil
			}
			cur = append(cur, t)
			wantMore = false
		}
	}
	if wantMore {
		return nil, fmt.Errorf("list ends with a comma")
	}
	if len(cur) > 0 {
		fields = append(fields, cur)
	}
	return fields, nil
}

func single(f []token, what string) (token, error) {
	if len(f) != 1 {
		return token{}, fmt.Errorf("%s must be a single value, not a list", what)
	}
	return f[0], nil
}

func parseLine(fields [][]token, env Env) (*Rule, error) {
	kind, err := single(fields[0], "connection type")
	if err != nil {
		return nil, err
	}
	r := &Rule{Protocol: ProtoPG, SSL: SSLAny}
	rest := fields[1:]
	switch kind.text {
	case "local":
		r.Addresses = []AddrPattern{{kind: addrLocal, text: "local"}}
	case "host":
	case "hostssl":
		r.SSL = SSLOn
	case "hostnossl":
		r.SSL = SSLOff
	case "hostnogssenc":
		// Every TCP connection: pgwarden never encrypts with GSSAPI.
	case "hostgssenc":
		r.SSL = SSLGSSEnc
	default:
		return nil, fmt.Errorf("invalid connection type %q", kind.text)
	}
	need := 3 // database, user, method
	if kind.text != "local" {
		need = 4
	}
	if len(rest) < need {
		return nil, fmt.Errorf("end-of-line before %s", []string{"database", "user", "address", "authentication method"}[len(rest)])
	}
	for _, t := range rest[0] {
		if strings.HasPrefix(t.text, "@") && !t.quoted {
			return nil, fmt.Errorf("@file inclusion is not supported: %q", t.text)
		}
		p, err := parseDatabase(t.text, t.quoted)
		if err != nil {
			return nil, err
		}
		r.Databases = append(r.Databases, p)
	}
	for _, t := range rest[1] {
		if strings.HasPrefix(t.text, "@") && !t.quoted {
			return nil, fmt.Errorf("@file inclusion is not supported: %q", t.text)
		}
		p, err := parseUser(t.text, t.quoted)
		if err != nil {
			return nil, err
		}
		r.Users = append(r.Users, p)
	}
	rest = rest[2:]
	if kind.text != "local" {
		addr, err := single(rest[0], "address")
		if err != nil {
			return nil, err
		}
		rest = rest[1:]
		switch {
		case addr.text == "all" && !addr.quoted:
			r.Addresses = []AddrPattern{{kind: addrAnyIP, text: "all"}}
		case addr.text == "samehost" || addr.text == "samenet":
			return nil, fmt.Errorf("address %q is not supported: list the CIDRs", addr.text)
		case strings.Contains(addr.text, "/"):
			p, err := netip.ParsePrefix(addr.text)
			if err != nil {
				return nil, fmt.Errorf("invalid IP address/CIDR %q", addr.text)
			}
			if err := mappedIPv4Rule(p); err != nil {
				return nil, err
			}
			r.Addresses = []AddrPattern{prefixPattern(p)}
		default:
			ip, err := netip.ParseAddr(addr.text)
			if err != nil {
				return nil, fmt.Errorf("invalid IP address %q (host names are not supported)", addr.text)
			}
			if len(rest) == 0 {
				return nil, fmt.Errorf("IP address %q needs a CIDR mask or a netmask column", addr.text)
			}
			mask, err := single(rest[0], "netmask")
			if err != nil {
				return nil, err
			}
			rest = rest[1:]
			n, err := maskBits(mask.text, ip)
			if err != nil {
				return nil, err
			}
			if err := mappedIPv4Rule(netip.PrefixFrom(ip, n)); err != nil {
				return nil, err
			}
			r.Addresses = []AddrPattern{prefixPattern(netip.PrefixFrom(ip, n))}
		}
	}
	if len(rest) == 0 {
		return nil, fmt.Errorf("end-of-line before authentication method")
	}
	m, err := single(rest[0], "authentication method")
	if err != nil {
		return nil, err
	}
	r.Method = Method(m.text)
	for _, f := range rest[1:] {
		opt, err := single(f, "option")
		if err != nil {
			return nil, err
		}
		name, val, ok := strings.Cut(opt.text, "=")
		if !ok {
			return nil, fmt.Errorf("authentication option %q is not of the form name=value", opt.text)
		}
		switch {
		case name == "clientcert" && (val == "verify-ca" || val == "verify-full"):
			r.ClientCert = val
		case name == "clientcert":
			return nil, fmt.Errorf("clientcert must be verify-ca or verify-full, not %q", val)
		case name == "issuer" && r.Method == OAuth:
			r.Issuer = val
		case name == "scope" && r.Method == OAuth:
			r.Scope = val
		case name == "validator" && r.Method == OAuth:
			// PostgreSQL's validator module: pgwarden validates itself.
		default:
			return nil, fmt.Errorf("authentication option %q is not supported by pgwarden", name)
		}
	}
	if !Known(r.Method) {
		return nil, fmt.Errorf("authentication method %q is not supported by pgwarden (trust, reject, password, md5, scram-sha-256, cert, peer, oauth)", m.text)
	}
	if r.Method == JWT {
		return nil, fmt.Errorf("method jwt is not a pg_hba.conf method; write it as an [[hba]] rule")
	}
	// PostgreSQL refuses these lines (hba.c); pgwarden would otherwise read
	// them as lines that refuse every connection without a certificate, a
	// meaning no PostgreSQL ever gave the file. A "host" line with cert is
	// the exception: PostgreSQL refuses it, PgBouncer reads it as matching
	// plain and TLS connections alike (its HBA test vectors, in
	// integration/testdata, expect that), and pgwarden does as PgBouncer:
	// a plain connection it matches is refused for want of a certificate.
	switch {
	case r.Method == Cert && kind.text != "hostssl" && kind.text != "host":
		return nil, fmt.Errorf("cert authentication is only supported on hostssl connections")
	case r.ClientCert != "" && kind.text != "hostssl":
		return nil, fmt.Errorf("clientcert can only be configured for \"hostssl\" rows")
	case r.Method == Cert && r.ClientCert == "verify-ca":
		return nil, fmt.Errorf("clientcert can only be set to \"verify-full\" when using \"cert\" authentication")
	}
	if msg := r.checkMethod(env); msg != "" {
		return nil, fmt.Errorf("%s", msg)
	}
	if msg := r.checkOAuth(env); msg != "" {
		return nil, fmt.Errorf("%s", msg)
	}
	if r.ClientCert != "" && (!env.TLS || !env.ClientCA) {
		return nil, fmt.Errorf("clientcert needs [tls] with client_ca_file")
	}
	if r.SSL == SSLOn && !env.TLS {
		return nil, fmt.Errorf("hostssl needs a [tls] section")
	}
	return r, nil
}

// mappedIPv4Rule refuses a pg_hba.conf address that is IPv4-mapped IPv6
// (::ffff:a.b.c.d) under a prefix of 96 bits or more. PostgreSQL compares
// a client only with rules of its own address family (check_ip), and it
// listens on IPv6 sockets with IPV6_V6ONLY, so an IPv4 client is never
// mapped and such a line matches no client there. pgwarden's [[hba]]
// rules read it as the IPv4 network it maps; taken that way from a
// pg_hba.conf, a line PostgreSQL never applied would decide for IPv4
// clients, and a `trust` one would let in the clients that PostgreSQL
// sent on to a password rule below it (until December 2026). Read as
// PostgreSQL reads it, the line would be dead, which nobody writes on
// purpose: refused, with the network to write instead.
func mappedIPv4Rule(p netip.Prefix) error {
	if !p.Addr().Is4In6() || p.Bits() < 96 {
		return nil
	}
	return fmt.Errorf("address %s is IPv4-mapped IPv6, which PostgreSQL never matches with an IPv4 client (it compares a client with rules of its own address family): write the IPv4 network %s", p, config.NormalizePrefix(p))
}

func prefixPattern(p netip.Prefix) AddrPattern {
	p = config.NormalizePrefix(p)
	return AddrPattern{kind: addrPrefix, prefix: p, text: p.String()}
}

// maskBits turns a netmask such as 255.255.255.0 into a prefix length; the
// mask must be of the same family as the address and contiguous.
func maskBits(s string, ip netip.Addr) (int, error) {
	m, err := netip.ParseAddr(s)
	if err != nil || m.Is4() != ip.Is4() {
		return 0, fmt.Errorf("invalid IP mask %q", s)
	}
	b := m.AsSlice()
	n := 0
	seenZero := false
	for _, x := range b {
		ones := bits.LeadingZeros8(^x)
		if seenZero && x != 0 || ones < 8 && x<<ones != 0 {
			return 0, fmt.Errorf("invalid IP mask %q: not contiguous", s)
		}
		if ones < 8 {
			seenZero = true
		}
		n += ones
	}
	return n, nil
}

package hba

import (
	"strings"
)

// PgHBALine renders a rule read from a pg_hba.conf file back in that
// syntax; ParseFile of the line gives the same rule. (Rules from TOML may use
// what pg_hba.conf cannot say, such as protocol http or an address list.)
func (rule *Rule) PgHBALine() string {
	kind := "host"
	switch {
	case len(rule.Addresses) == 1 && rule.Addresses[0].kind == addrLocal:
		kind = "local"
	case rule.SSL == SSLOn:
		kind = "hostssl"
	case rule.SSL == SSLOff:
		kind = "hostnossl"
	case rule.SSL == SSLGSSEnc:
		kind = "hostgssenc"
	}
	fields := []string{kind, joinField(rule.Databases), joinField(rule.Users)}
	if kind != "local" {
		fields = append(fields, rule.Addresses[0].text)
	}
	fields = append(fields, string(rule.Method))
	if rule.ClientCert != "" {
		fields = append(fields, "clientcert="+rule.ClientCert)
	}
	return strings.Join(fields, " ")
}

func joinField(ps []NamePattern) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.text
		if p.kind != nameLiteral && !strings.HasPrefix(p.text, "\"") && strings.ContainsAny(p.text, " \t\r,#\"") {
			// A role with characters the tokenizer splits on: quoted
			// after its +, since a token that starts with a quote is a
			// literal name. (A regular expression with them is quoted
			// whole, which PostgreSQL reads as one: see regexName.)
			parts[i] = p.text[:1] + quote(p.text[1:])
		}
	}
	return strings.Join(parts, ",")
}

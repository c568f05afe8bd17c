package hba

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/pgwarden/pgwarden/config"
)

// TestDataDriven runs the files under testdata/datadriven: "rules" loads [[hba]]
// blocks, "hbafile" loads pg_hba.conf lines, "match" explains a request
// against the rules loaded last, "needs-roles" says whether that request's
// match could depend on roles its user holds (Rules.NeedsRoles). Run with
// -rewrite to update expectations.
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata/datadriven", func(t *testing.T, path string) {
		var rules Rules
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			env := Env{TLS: td.HasArg("tls"), ClientCA: td.HasArg("tls"), JWT: td.HasArg("jwt")}
			if td.HasArg("jwt") {
				env.Issuers = []string{"https://idp.example.com/", "pgwarden"}
			}
			switch td.Cmd {
			case "rules":
				cfg, err := config.Parse("test.toml", []byte(td.Input))
				if err != nil {
					return "error:\n" + err.Error()
				}
				rs, err := FromConfig(cfg, env)
				if err != nil {
					return "error:\n" + err.Error()
				}
				rules = rs
				return table(rs)
			case "hbafile":
				rs, err := ParseFile("pg_hba.conf", []byte(td.Input), env)
				if err != nil {
					return "error:\n" + err.Error()
				}
				rules = rs
				return table(rs)
			case "match", "needs-roles":
				req := &Request{Protocol: ProtoPG}
				for _, a := range td.CmdArgs {
					switch a.Key {
					case "protocol":
						req.Protocol = Protocol(a.Vals[0])
					case "user":
						req.User = a.Vals[0]
					case "db":
						req.Database = a.Vals[0]
					case "addr":
						if a.Vals[0] == "local" {
							req.Local = true
						} else {
							req.Addr = netip.MustParseAddr(a.Vals[0])
						}
					case "ssl":
						req.SSL = true
					case "replication":
						req.Replication = true
					case "roles":
						req.Roles = a.Vals
					default:
						td.Fatalf(t, "unknown argument %s", a.Key)
					}
				}
				if req.Database == "" {
					req.Database = req.User
				}
				if td.Cmd == "needs-roles" {
					return fmt.Sprintln(rules.NeedsRoles(req))
				}
				rule, misses := rules.Explain(req)
				var b strings.Builder
				for _, m := range misses {
					fmt.Fprintf(&b, "rule %d: %s\n", m.Rule.Number, m.Reason)
				}
				if rule == nil {
					b.WriteString("no match: reject\n")
				} else {
					fmt.Fprintf(&b, "match rule %d: %s\n", rule.Number, rule.Method)
				}
				return b.String()
			}
			td.Fatalf(t, "unknown command %s", td.Cmd)
			return ""
		})
	})
}

func table(rs Rules) string {
	var b strings.Builder
	rs.WriteTable(&b)
	return b.String()
}

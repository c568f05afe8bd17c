package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/hba"
	"github.com/pgwarden/pgwarden/snapshot"
)

func check(cfgPath string, stdout io.Writer) error {
	snap, err := snapshot.Load(cfgPath, authcore.NewHashLimiter(0))
	if err != nil {
		return err
	}
	if err := snap.Rules.WriteTable(stdout); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	for _, w := range snap.Warnings() {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	// Written another way than [backend] host, yet the default server (or
	// not resolvable): a client's 3D000 for the backend name is easier to
	// understand when check said so first.
	for _, d := range snap.Config.Databases {
		if d.DefaultServer {
			db := d.BackendDBName
			if db == "" {
				db = d.Name
			}
			fmt.Fprintf(stdout, "note: [[databases]] %q: host %q is taken for the default backend server (it shares an address with %q, is this machine, or did not resolve), so the database %q is reached only as %q\n",
				d.Name, d.Host, snap.Config.Backend.Host, db, d.Name)
		}
	}
	fmt.Fprintf(stdout, "%s: OK (%s, %s)\n", snap.Config.Path, count(len(snap.Rules), "rule"), count(snap.Users.Len(), "user"))
	return nil
}

// explainOptions are explain's flags.
type explainOptions struct {
	config                                   *string
	protocol, user, database, address, token string
	ssl, replication                         bool
	roles                                    []string
}

func explain(o explainOptions, stdout io.Writer) error {
	cfgPath, protocol, user, database, address := o.config, &o.protocol, &o.user, &o.database, &o.address
	ssl, replication, token := &o.ssl, &o.replication, &o.token
	if *user == "" || *address == "" {
		return usageErr("explain needs --user and --address")
	}
	req := &hba.Request{Protocol: hba.Protocol(*protocol), User: *user, Database: *database, SSL: *ssl, Replication: *replication}
	switch req.Protocol {
	case hba.ProtoPG, hba.ProtoHTTP:
	default:
		return usageErr("--protocol must be pg or http")
	}
	if req.Database == "" {
		req.Database = req.User
	}
	if *address == "local" || *address == "unix" {
		req.Local = true
	} else {
		a, err := netip.ParseAddr(*address)
		if err != nil {
			return usageErr("--address %q is not an IP address or local", *address)
		}
		req.Addr = a.Unmap()
	}
	snap, err := snapshot.Load(*cfgPath, authcore.NewHashLimiter(0))
	if err != nil {
		return err
	}
	if u := snap.Users.Lookup(req.User); u != nil {
		req.Roles = u.Roles
		if len(o.roles) > 0 {
			fmt.Fprintf(stdout, "note: --roles ignored: %s is in the users file, whose roles decide\n", req.User)
		}
	} else if snap.Rules.NeedsRoles(req) {
		req.Roles = o.roles
		from := "it holds no role but its own (without [auth_query], PostgreSQL's memberships are not read)"
		if snap.Config.AuthQuery != nil {
			from = "at login its PostgreSQL memberships decide, read through [auth_query]"
		}
		fmt.Fprintf(stdout, "note: %s is not in the users file, and +role or samerole entries may decide: %s; roles taken here: %s\n",
			req.User, from, strings.Join(append([]string{req.User}, o.roles...), ", "))
	}
	rule, misses := snap.Rules.Explain(req)
	for _, m := range misses {
		fmt.Fprintf(stdout, "rule %d (%s): no match: %s\n", m.Rule.Number, m.Rule.Source, m.Reason)
	}
	if rule == nil {
		fmt.Fprintln(stdout, "no rule matches: the connection is rejected")
		fmt.Fprintln(stdout, "method: reject")
		return nil
	}
	fmt.Fprintf(stdout, "rule %d (%s): match\n", rule.Number, rule.Source)
	fmt.Fprintf(stdout, "method: %s\n", rule.Method)
	if rule.Method != hba.Reject {
		// Routing refuses some sessions after authentication; say so here
		// rather than let the rule's match read as a way in.
		var routed *backend.RoutedDatabaseError
		if _, err := backend.Route(snap.Config, req.User, snap.Users.Lookup(req.User), backend.Credentials{}, req.Database); errors.As(err, &routed) {
			fmt.Fprintf(stdout, "refused after authentication (%s): %s\n", routed.SQLState(), routed.AuditReason())
		}
	}
	if *token != "" {
		// An oauth rule takes only its issuer's tokens, with its scope.
		if rule.Method == hba.OAuth {
			if _, err := snap.Tokens.VerifyFor(context.Background(), *token, rule.Issuer, rule.Scope); err != nil {
				fmt.Fprintf(stdout, "token: refused by rule %d: %s\n", rule.Number, authcore.ReasonOf(err))
				return nil
			}
		}
		fmt.Fprintf(stdout, "token: %s\n", snap.Tokens.Explain(context.Background(), *token))
	}
	return nil
}

// count says "1 rule", "2 rules".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

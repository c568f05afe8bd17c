package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/hba"
	"github.com/pgwarden/pgwarden/snapshot"
)

func cmdCheck(args []string, stdout io.Writer) error {
	fs := newFlags("check")
	cfgPath := configFlag(fs)
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageErr("check takes no arguments")
	}
	snap, err := snapshot.Load(*cfgPath, authcore.NewHashLimiter(0))
	if err != nil {
		return err
	}
	if err := snap.Rules.WriteTable(stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%s: OK (%s, %s)\n", snap.Config.Path, count(len(snap.Rules), "rule"), count(snap.Users.Len(), "user"))
	return nil
}

func cmdExplain(args []string, stdout io.Writer) error {
	fs := newFlags("explain")
	cfgPath := configFlag(fs)
	protocol := fs.String("protocol", "pg", "pg or http")
	user := fs.String("user", "", "user name")
	database := fs.String("database", "", "database name (default: the user name)")
	address := fs.String("address", "", "client IP address, or local for the unix socket")
	ssl := fs.Bool("ssl", false, "the connection uses TLS")
	replication := fs.Bool("replication", false, "a physical replication connection")
	token := fs.String("token", "", "a bearer token: say who it proves (users-file entry or role claim) or why it is refused")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageErr("explain takes no positional arguments")
	}
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
	if *token != "" {
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

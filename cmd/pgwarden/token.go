package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
)

func cmdToken(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return usageErr("usage: pgwarden token create [-c config.toml] --user NAME [--expire 90d]")
	}
	fs := newFlags("token create")
	cfgPath := configFlag(fs)
	user := fs.String("user", "", "user the token is for")
	expire := fs.String("expire", "", "lifetime (default tokens.default_ttl)")
	if pos, err := parseFlags(fs, args[1:]); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageErr("token create takes no positional arguments")
	}
	if *user == "" {
		return usageErr("token create needs --user")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	var ttl time.Duration
	if *expire != "" {
		if ttl, err = config.ParseDuration(*expire); err != nil {
			return usageErr("--expire: %v", err)
		}
	}
	// The user's secret is made on first use, through the same atomic,
	// locked writer as every users-file change.
	var u *authcore.User
	created := false
	err = authcore.UpdateUsersFile(cfg.Users.File, func(list []*authcore.User) ([]*authcore.User, error) {
		for _, x := range list {
			if x.Name == *user {
				if x.Secret == "" {
					x.Secret = authcore.NewSecret()
					created = true
				}
				u = x
				return list, nil
			}
		}
		return nil, fmt.Errorf("no user %q in %s", *user, cfg.Users.File)
	})
	if err != nil {
		return err
	}
	if u == nil {
		return errors.New("user not found")
	}
	tok, exp, err := authcore.IssueToken(cfg.Tokens, u, ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	fmt.Fprintf(stderr, "token for %s expires %s\n", u.Name, exp.UTC().Format(time.RFC3339))
	if created {
		fmt.Fprintf(stderr, "a new secret was stored for %s: reload the server (SIGHUP) before using the token\n", u.Name)
	}
	return nil
}

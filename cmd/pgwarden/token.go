package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
)

func tokenCreate(cfgPath, userName, expireFlag string, stdout, stderr io.Writer) error {
	user, expire := &userName, &expireFlag
	if *user == "" {
		return usageErr("token create needs --user")
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	ttl, err := authcore.ParseTokenLifetime(*expire)
	if err != nil {
		return usageErr("--expire: %v", err)
	}
	// The user's secret is made on first use, through the same atomic,
	// locked writer as every users-file change.
	var u *authcore.User
	created := false
	err = updateUsers(cfg, func(list []*authcore.User) ([]*authcore.User, error) {
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
		return nil, fmt.Errorf("no user %q in %s", *user, storeName(cfg))
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
		fmt.Fprintf(stderr, "a new secret was stored for %s: running servers take it when they reload (the file watch, the store's NOTIFY, or SIGHUP)\n", u.Name)
	}
	return nil
}

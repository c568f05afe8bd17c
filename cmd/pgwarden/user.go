package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
)

func cmdUser(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	const use = "usage: pgwarden user add|passwd|del|list [-c config.toml] NAME [--admin] [--backend-user ROLE] [--password-stdin]"
	if len(args) == 0 {
		return usageErr(use)
	}
	sub := args[0]
	fs := newFlags("user " + sub)
	cfgPath := configFlag(fs)
	admin := fs.Bool("admin", false, "give the user role admin (add)")
	backendUser := fs.String("backend-user", "", "the backend role the user logs in as (add; default: the user's name)")
	fromStdin := fs.Bool("password-stdin", false, "read the password from one line of stdin")
	algo := fs.String("algo", authcore.AlgoSCRAM, "hash algorithm for the password")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if sub == "list" {
		if len(pos) != 0 {
			return usageErr(use)
		}
		us, err := authcore.LoadUsers(cfg.Users.File)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "name\troles\tbackend_user\tpassword\tvalid_until\tdisabled")
		for _, u := range us.All() {
			kind := "-"
			if u.Hash() != nil {
				kind = u.Hash().Kind()
			}
			until := "-"
			if u.ValidUntil != nil {
				until = u.ValidUntil.UTC().Format("2006-01-02T15:04:05Z")
			}
			fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\t%v\n", u.Name, u.Roles, u.BackendRole(), kind, until, u.Disabled)
		}
		return tw.Flush()
	}
	if len(pos) != 1 || (sub != "add" && sub != "passwd" && sub != "del") {
		return usageErr(use)
	}
	name := pos[0]
	var hash string
	if sub == "add" || sub == "passwd" {
		var pw string
		if *fromStdin {
			pw, err = readPasswordLine(stdin)
		} else {
			pw, err = readPassword(stdin, stderr)
		}
		if err != nil {
			return err
		}
		if hash, err = authcore.HashNewPassword(*algo, pw, cfg.Users.PasswordMinLength); err != nil {
			return err
		}
	}
	if sub == "passwd" {
		if err := authcore.UpdateUsersFile(cfg.Users.File, authcore.PasswordChange(name, hash)); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "password changed for %s in %s; a running server sees it after SIGHUP or RELOAD\n", name, cfg.Users.File)
		return nil
	}
	var done string
	err = authcore.UpdateUsersFile(cfg.Users.File, func(list []*authcore.User) ([]*authcore.User, error) {
		for i, u := range list {
			if u.Name != name {
				continue
			}
			switch sub {
			case "add":
				return nil, fmt.Errorf("user %q exists (use passwd)", name)
			case "del":
				done = "deleted " + name
				return append(list[:i], list[i+1:]...), nil
			}
		}
		if sub != "add" {
			return nil, fmt.Errorf("no user %q in %s", name, cfg.Users.File)
		}
		u := &authcore.User{Name: name, Password: hash, BackendUser: *backendUser}
		if *admin {
			u.Roles = []string{"admin"}
		}
		done = "added " + name
		return append(list, u), nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%s in %s; a running server sees it after SIGHUP or RELOAD\n", done, cfg.Users.File)
	return nil
}

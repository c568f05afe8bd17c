package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/store"
)

// userOptions are the flags of the user commands.
type userOptions struct {
	config      *string
	admin       bool
	backendUser string
	fromStdin   bool
	algo        string
}

func userList(cfgPath string, stdout io.Writer) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	st, err := store.Open(context.Background(), cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	us, err := st.Load(context.Background())
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

// configAndNewHash loads o's configuration, then asks for a password and
// hashes it under that configuration's policy.
func configAndNewHash(o userOptions, stdin io.Reader, stderr io.Writer) (*config.Config, string, error) {
	cfg, err := config.Load(*o.config)
	if err != nil {
		return nil, "", err
	}
	hash, err := newPasswordHash(o, cfg, stdin, stderr)
	return cfg, hash, err
}

// newPasswordHash asks for a password and hashes it as o says.
func newPasswordHash(o userOptions, cfg *config.Config, stdin io.Reader, stderr io.Writer) (string, error) {
	var pw string
	var err error
	if o.fromStdin {
		pw, err = readPasswordLine(stdin)
	} else {
		pw, err = readPassword(stdin, stderr)
	}
	if err != nil {
		return "", err
	}
	return authcore.HashNewPassword(o.algo, pw, cfg.Users.PasswordMinLength)
}

func userPasswd(o userOptions, name string, stdin io.Reader, stderr io.Writer) error {
	cfg, hash, err := configAndNewHash(o, stdin, stderr)
	if err != nil {
		return err
	}
	if err := updateUsers(cfg, authcore.PasswordChange(name, hash)); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "password changed for %s in %s; %s\n", name, storeName(cfg), whenSeen(cfg))
	return nil
}

func userAdd(o userOptions, name string, stdin io.Reader, stderr io.Writer) error {
	cfg, hash, err := configAndNewHash(o, stdin, stderr)
	if err != nil {
		return err
	}
	err = updateUsers(cfg, func(list []*authcore.User) ([]*authcore.User, error) {
		for _, u := range list {
			if u.Name == name {
				return nil, fmt.Errorf("user %q exists (use passwd)", name)
			}
		}
		u := &authcore.User{Name: name, Password: hash, BackendUser: o.backendUser}
		if o.admin {
			u.Roles = []string{"admin"}
		}
		return append(list, u), nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "added %s in %s; %s\n", name, storeName(cfg), whenSeen(cfg))
	return nil
}

func userDel(o userOptions, name string, stderr io.Writer) error {
	cfg, err := config.Load(*o.config)
	if err != nil {
		return err
	}
	err = updateUsers(cfg, func(list []*authcore.User) ([]*authcore.User, error) {
		for i, u := range list {
			if u.Name == name {
				return append(list[:i], list[i+1:]...), nil
			}
		}
		return nil, fmt.Errorf("no user %q in %s", name, storeName(cfg))
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "deleted %s in %s; %s\n", name, storeName(cfg), whenSeen(cfg))
	return nil
}

// updateUsers changes the users where the configuration keeps them.
func updateUsers(cfg *config.Config, change func([]*authcore.User) ([]*authcore.User, error)) error {
	st, err := store.Open(context.Background(), cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Update(context.Background(), change, nil)
}

// storeName says where the users are, for messages.
func storeName(cfg *config.Config) string {
	if cfg.Store.Kind == "postgres" {
		return "the PostgreSQL store"
	}
	return cfg.Users.File
}

// whenSeen says when running servers see a change.
func whenSeen(cfg *config.Config) string {
	if cfg.Store.Kind == "postgres" {
		return "every running instance sees it within a second (NOTIFY)"
	}
	return "running servers watching the file see it within a second (or after SIGHUP or RELOAD)"
}

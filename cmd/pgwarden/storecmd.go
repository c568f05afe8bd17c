package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/store"
)

func storeCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "create, migrate and fill the PostgreSQL user store",
		Long: `With [store] kind = "postgres" the users live in a pgwarden schema that every
instance shares; these commands create or migrate that schema and move a
users file into it.`,
		Example: `  pgwarden store init -c config.toml
  pgwarden store import -c config.toml users.toml`,
		Args: cobra.ArbitraryArgs,
		RunE: commandGroup,
	}
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "create the pgwarden schema, or migrate it to this binary's version",
		Long: `Create the pgwarden schema in [store] database, or migrate it to the version
this binary needs, in one transaction (idempotent; concurrent runs wait for
each other). The [store] user needs CREATE on the database the first time.`,
		Example: "  pgwarden store init -c config.toml",
		Args:    noArgs,
	}
	initCfg := configFlag(initCmd)
	initCmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := postgresStoreConfig(*initCfg)
		if err != nil {
			return err
		}
		from, to, err := store.Init(context.Background(), cfg)
		if err != nil {
			return err
		}
		if from == to {
			fmt.Fprintf(stdout, "the pgwarden schema is at version %d already\n", to)
		} else {
			fmt.Fprintf(stdout, "the pgwarden schema went from version %d to %d\n", from, to)
		}
		return nil
	}
	importCmd := &cobra.Command{
		Use:     "import USERS_FILE",
		Short:   "copy a users file's users into the store (replacing users of the same name)",
		Example: "  pgwarden store import -c config.toml /etc/pgwarden/users.toml",
		Args:    exactArgs(1, "one USERS_FILE"),
	}
	importCfg := configFlag(importCmd)
	importCmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := postgresStoreConfig(*importCfg)
		if err != nil {
			return err
		}
		in, err := authcore.LoadUsers(args[0])
		if err != nil {
			return err
		}
		st, err := store.Open(context.Background(), cfg)
		if err != nil {
			return err
		}
		defer st.Close()
		err = st.Update(context.Background(), func(list []*authcore.User) ([]*authcore.User, error) {
			byName := map[string]int{}
			for i, u := range list {
				byName[u.Name] = i
			}
			for _, u := range in.All() {
				if i, ok := byName[u.Name]; ok {
					list[i] = u
				} else {
					list = append(list, u)
				}
			}
			return list, nil
		}, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "imported %s from %s into the PostgreSQL store; every running instance sees them within a second\n",
			count(in.Len(), "user"), args[0])
		return nil
	}
	for _, c := range []*cobra.Command{initCmd, importCmd} {
		c.SilenceUsage, c.SilenceErrors = true, true
		cmd.AddCommand(c)
	}
	return cmd
}

// postgresStoreConfig loads a configuration that must name a postgres
// store.
func postgresStoreConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if cfg.Store.Kind != "postgres" {
		return nil, fmt.Errorf("%s: store.kind is %q: the store commands are for [store] kind = \"postgres\"", cfg.Path, cfg.Store.Kind)
	}
	return cfg, nil
}

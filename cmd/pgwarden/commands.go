package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/certs"
)

func serveCommand(stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "run the gateway (the default command)",
		Long: `Run the gateway: listen for PostgreSQL wire and HTTP clients as the
configuration says, until SIGTERM (drain) or SIGINT (stop now). SIGHUP
reloads the configuration, the users file and the HBA rules.`,
		Example: "  pgwarden serve -c /etc/pgwarden/config.toml",
	}
	cfg := configFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error { return serve(*cfg, stderr) }
	return cmd
}

func checkCommand(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check",
		Short: "validate the configuration, users and HBA rules; print the rule table",
		Long: `Load the configuration as serve would, report every problem found as
FILE:LINE: KEY: what is wrong; what to do, and print the HBA rule table.
Exit status 1 when anything is wrong.`,
		Example: "  pgwarden check -c config.toml",
	}
	cfg := configFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error { return check(*cfg, stdout) }
	return cmd
}

func explainCommand(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "explain --user NAME --address IP|local",
		Short: "say which HBA rule a connection would match, and why the others do not",
		Example: `  pgwarden explain -c config.toml --protocol pg --user alice --database app --address 10.1.2.3 --ssl
  pgwarden explain -c config.toml --protocol http --user alice --address 127.0.0.1 --token "$TOKEN"`,
	}
	var o explainOptions
	o.config = configFlag(cmd)
	f := cmd.Flags()
	f.StringVar(&o.protocol, "protocol", "pg", "pg or http")
	f.StringVar(&o.user, "user", "", "user name (required)")
	f.StringVar(&o.database, "database", "", "database name (default: the user name)")
	f.StringVar(&o.address, "address", "", "client IP address, or local for the unix socket (required)")
	f.BoolVar(&o.ssl, "ssl", false, "the connection uses TLS")
	f.BoolVar(&o.replication, "replication", false, "a physical replication connection")
	f.StringSliceVar(&o.roles, "roles", nil, "for a name the users file does not hold: the PostgreSQL roles it is a member of (with [auth_query], read at login)")
	f.StringVar(&o.token, "token", "", "a bearer token: say who it proves (users-file entry or role claim) or why it is refused")
	cmd.RunE = func(cmd *cobra.Command, args []string) error { return explain(o, stdout) }
	return cmd
}

func hashPasswordCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hash-password",
		Short: "hash a password for the users file",
		Long: `Read a password (twice from a terminal without echo, else one line of
stdin) and print its hash for the password key of a users-file entry.`,
		Example: "  printf 'secret\\n' | pgwarden hash-password --algo bcrypt",
	}
	algo := cmd.Flags().String("algo", authcore.AlgoSCRAM, "scram-sha-256, bcrypt, pbkdf2-sha512 or argon2id")
	cmd.RunE = func(cmd *cobra.Command, args []string) error { return hashPassword(*algo, stdin, stdout, stderr) }
	return cmd
}

func userCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "add, change, delete or list users of the users file",
		Long: `Change the users the configuration names: the users file (users.file),
with the same locked, atomic writer as the admin console, or the PostgreSQL
store ([store] kind = "postgres"). Running servers see a change within a
second (they watch the file; the store notifies them), or at SIGHUP or
RELOAD.`,
		Example: `  pgwarden user add alice --backend-user app -c config.toml
  printf 'secret\n' | pgwarden user passwd alice --password-stdin -c config.toml
  pgwarden user list -c config.toml`,
		Args: cobra.ArbitraryArgs,
		RunE: commandGroup,
	}
	withPassword := func(c *cobra.Command, o *userOptions) {
		c.Flags().BoolVar(&o.fromStdin, "password-stdin", false, "read the password from one line of stdin")
		c.Flags().StringVar(&o.algo, "algo", authcore.AlgoSCRAM, "hash algorithm: scram-sha-256, bcrypt, pbkdf2-sha512 or argon2id")
	}
	add := &cobra.Command{
		Use:     "add NAME",
		Short:   "add a user, asking for its password",
		Example: "  pgwarden user add alice --admin -c config.toml",
		Args:    exactArgs(1, "one user NAME"),
	}
	var ao userOptions
	ao.config = configFlag(add)
	add.Flags().BoolVar(&ao.admin, "admin", false, "give the user role admin (admin console, web console setup)")
	add.Flags().StringVar(&ao.backendUser, "backend-user", "", "the backend role the user logs in as (default: the user's name)")
	withPassword(add, &ao)
	add.RunE = func(cmd *cobra.Command, args []string) error { return userAdd(ao, args[0], stdin, stderr) }

	passwd := &cobra.Command{
		Use:     "passwd NAME",
		Short:   "change a user's password",
		Example: "  pgwarden user passwd alice -c config.toml",
		Args:    exactArgs(1, "one user NAME"),
	}
	var po userOptions
	po.config = configFlag(passwd)
	withPassword(passwd, &po)
	passwd.RunE = func(cmd *cobra.Command, args []string) error { return userPasswd(po, args[0], stdin, stderr) }

	del := &cobra.Command{
		Use:     "del NAME",
		Short:   "delete a user",
		Example: "  pgwarden user del alice -c config.toml",
		Args:    exactArgs(1, "one user NAME"),
	}
	var do userOptions
	do.config = configFlag(del)
	del.RunE = func(cmd *cobra.Command, args []string) error { return userDel(do, args[0], stderr) }

	list := &cobra.Command{
		Use:     "list",
		Short:   "list users: roles, backend role, hash kind, expiry (never a hash)",
		Example: "  pgwarden user list -c config.toml",
		Args:    noArgs,
	}
	lcfg := configFlag(list)
	list.RunE = func(cmd *cobra.Command, args []string) error { return userList(*lcfg, stdout) }
	for _, c := range []*cobra.Command{add, passwd, del, list} {
		c.SilenceUsage, c.SilenceErrors = true, true
		cmd.AddCommand(c)
	}
	return cmd
}

func tokenCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "token",
		Short:   "issue bearer tokens",
		Example: "  pgwarden token create --user alice --expire 30d -c config.toml",
		Args:    cobra.ArbitraryArgs,
		RunE:    commandGroup,
	}
	create := &cobra.Command{
		Use:   "create --user NAME",
		Short: "print a JWT for a user, signed with the user's own secret",
		Long: `Print a JWT (HS256) for a user of the users file, signed with the user's
own secret, which is made and stored on first use (running servers take it
within a second, as any change of the users). Deleting the user, changing
or removing its password (also by hand in the users file: the token is
bound to the stored hash it was issued under) or changing its secret
revokes every token it has.`,
		Example: "  pgwarden token create --user alice --expire 30d -c config.toml",
		Args:    noArgs,
	}
	cfg := configFlag(create)
	user := create.Flags().String("user", "", "user the token is for (required)")
	expire := create.Flags().String("expire", "", "lifetime such as 1h or 90d (default: tokens.default_ttl)")
	create.RunE = func(cmd *cobra.Command, args []string) error {
		return tokenCreate(*cfg, *user, *expire, stdout, stderr)
	}
	create.SilenceUsage, create.SilenceErrors = true, true
	cmd.AddCommand(create)
	return cmd
}

func certsCommand(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "certs",
		Short:   "make certificates for TLS and client-certificate logins",
		Example: "  pgwarden certs init --dir certs --client alice",
		Args:    cobra.ArbitraryArgs,
		RunE:    commandGroup,
	}
	init := &cobra.Command{
		Use:   "init --dir DIR [--client NAME...]",
		Short: "make a CA, an ECDSA P-256 server certificate and client certificates",
		Long: `Write ca.crt, ca.key, server.crt and server.key (and NAME.crt, NAME.key for
each client) into DIR: what [tls] cert_file, key_file and client_ca_file
point to. Client names may also follow the flags.`,
		Example: "  pgwarden certs init --dir certs --hosts db.example.com,10.0.0.5 --client alice bob",
	}
	dir := init.Flags().String("dir", "", "folder to write into (required)")
	hosts := init.Flags().String("hosts", strings.Join(certs.DefaultHosts, ","), "server certificate names and addresses, comma-separated")
	clients := init.Flags().StringArray("client", nil, "client certificate to make (CN = NAME); repeatable")
	init.Args = cobra.ArbitraryArgs
	init.RunE = func(cmd *cobra.Command, args []string) error {
		return certsInit(*dir, *hosts, append(*clients, args...), stdout)
	}
	init.SilenceUsage, init.SilenceErrors = true, true
	cmd.AddCommand(init)
	revoke := &cobra.Command{
		Use:   "revoke --dir DIR [NAME | FILE.crt]...",
		Short: "revoke client certificates of the CA certs init made (writes DIR/ca.crl)",
		Long: `Add certificates to DIR/ca.crl, the revocation list of the CA in DIR
(ca.crt, ca.key), keeping those it already lists, and renew the list for a
year; with no certificate it only renews. NAME means DIR/NAME.crt. Point
[tls] crl_file at DIR/ca.crl: a running server takes the new list within a
second. A list past its next update refuses every client certificate of its
CA, as PostgreSQL's ssl_crl_file does, so renew it within the year.`,
		Example: "  pgwarden certs revoke --dir certs alice",
	}
	rdir := revoke.Flags().String("dir", "", "folder of the CA (required)")
	revoke.Args = cobra.ArbitraryArgs
	revoke.RunE = func(cmd *cobra.Command, args []string) error {
		return certsRevoke(*rdir, args, stdout)
	}
	revoke.SilenceUsage, revoke.SilenceErrors = true, true
	cmd.AddCommand(revoke)
	return cmd
}

// probeCommand is a health check for containers without curl: GET a URL
// (such as /readyz), exit 0 on a 2xx answer, 1 otherwise.
func probeCommand(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "probe URL",
		Short: "GET a URL such as /readyz; exit 0 on a 2xx answer (a container health check)",
		Long: `GET the URL with a short timeout and exit 0 when the answer is 2xx, 1
otherwise, printing the status. Meant for HEALTHCHECK in images that have no
curl (the Dockerfile's distroless base).`,
		Example: "  pgwarden probe http://127.0.0.1:8432/readyz",
		Args:    exactArgs(1, "one URL"),
	}
	timeout := cmd.Flags().Duration("timeout", 3*time.Second, "how long to wait for the answer")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c := &http.Client{Timeout: *timeout}
		resp, err := c.Get(args[0])
		if err != nil {
			return err
		}
		resp.Body.Close()
		fmt.Fprintln(stdout, resp.Status)
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s answered %s", args[0], resp.Status)
		}
		return nil
	}
	return cmd
}

// manCommand writes man pages made from the same definitions as --help.
func manCommand(root *cobra.Command, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "man --dir DIR",
		Short:   "write man pages (pgwarden.1, pgwarden-serve.1, ...) into DIR",
		Example: "  pgwarden man --dir /usr/local/share/man/man1",
	}
	dir := cmd.Flags().String("dir", "", "folder to write into (required)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if *dir == "" {
			return usageErr("man needs --dir")
		}
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			return err
		}
		root.DisableAutoGenTag = true
		hdr := &doc.GenManHeader{Title: "PGWARDEN", Section: "1", Source: "pgwarden " + version, Manual: "pgwarden manual"}
		if err := doc.GenManTree(root, hdr, *dir); err != nil {
			return err
		}
		n, _ := filepath.Glob(filepath.Join(*dir, "pgwarden*.1"))
		fmt.Fprintf(stdout, "wrote %d man pages in %s\n", len(n), *dir)
		return nil
	}
	return cmd
}

// Command pgwarden is an authentication gateway for PostgreSQL.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgwarden/pgwarden/backend"
)

// version and commit are set at build time with
// -ldflags "-X main.version=... -X main.commit=...".
var (
	version = ""
	commit  = ""
)

// errUsage marks a command-line mistake: exit status 2.
type errUsage struct{ msg string }

func (e errUsage) Error() string { return e.msg }

func usageErr(format string, args ...any) error { return errUsage{fmt.Sprintf(format, args...)} }

func main() {
	// The backend target and its keys come from the configuration alone:
	// libpq's PG* variables (PGSSLKEY, PGSERVICE, PGOPTIONS, ...) would
	// otherwise reach every backend connection through pgconn.
	ignoredEnv = backend.IgnoreLibpqEnvironment()
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// ignoredEnv are the libpq variables main removed, for serve's log.
var ignoredEnv []string

// run executes one command line: 0 on success, 1 when the command fails,
// 2 for a usage mistake (after printing the command's usage).
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCommand(stdin, stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "pgwarden:", err)
	var ue errUsage
	if errors.As(err, &ue) {
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(stderr, "\nusage: %s\nRun '%s --help' for every flag and an example.\n", cmd.UseLine(), cmd.CommandPath())
		return 2
	}
	return 1
}

// versionString says which build this is: version, commit and Go version.
func versionString() string {
	v, c := version, commit
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && c == "" {
				c = s.Value
			}
		}
	}
	if v == "" {
		v = "dev"
	}
	if c == "" {
		c = "unknown"
	}
	if len(c) > 12 {
		c = c[:12]
	}
	return fmt.Sprintf("%s (commit %s, %s, %s/%s)", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// defaultConfigPath is -c's default: $PGWARDEN_CONFIG, else ./config.toml.
func defaultConfigPath() string {
	if p := os.Getenv("PGWARDEN_CONFIG"); p != "" {
		return p
	}
	return "config.toml"
}

// configFlag adds -c/--config to cmd.
func configFlag(cmd *cobra.Command) *string {
	return cmd.Flags().StringP("config", "c", defaultConfigPath(), "configuration file ($PGWARDEN_CONFIG)")
}

// args says how many positional arguments a command takes, as a usage
// error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErr("%s takes no arguments (got %q)", cmd.CommandPath(), strings.Join(args, " "))
	}
	return nil
}

// unknownCommand refuses a first word that is no command, suggesting a
// near one.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	cmd.SuggestionsMinimumDistance = 2
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		return usageErr("unknown command %q; did you mean %q?", args[0], s[0])
	}
	return usageErr("unknown command %q", args[0])
}

// commandGroup makes the RunE of a command that only holds subcommands
// ("user", "token", "certs").
func commandGroup(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		return usageErr("%s needs a command: %s", cmd.CommandPath(), strings.Join(names, ", "))
	}
	return unknownCommand(cmd, args)
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErr("%s needs %s", cmd.CommandPath(), what)
		}
		return nil
	}
}

// newRootCommand builds the command tree; every help text, completion
// script and man page comes from these definitions.
func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "pgwarden",
		Short: "an authentication gateway for PostgreSQL",
		Long: `pgwarden authenticates PostgreSQL wire clients (psql, pgx, JDBC, psycopg,
node-postgres) and HTTP clients (SQL as JSON at POST /_sql) with one ordered
HBA rule list, then relays them to the backend PostgreSQL as their mapped role.

Without a command, pgwarden runs "serve".`,
		Example: `  pgwarden certs init --dir certs
  printf 'secret\n' | pgwarden user add alice --password-stdin -c config.toml
  pgwarden check -c config.toml
  pgwarden -c config.toml`,
		Version:       versionString(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          unknownCommand,
		// Completion and man pages describe the commands, not one machine.
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	root.SetVersionTemplate("pgwarden {{.Version}}\n")
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageErr("%v", err) })
	// "pgwarden -c FILE" is "pgwarden serve -c FILE".
	rootCfg := configFlag(root)
	root.RunE = func(cmd *cobra.Command, args []string) error { return serve(*rootCfg, stderr) }

	root.AddCommand(
		serveCommand(stderr),
		checkCommand(stdout),
		explainCommand(stdout),
		hashPasswordCommand(stdin, stdout, stderr),
		userCommand(stdin, stdout, stderr),
		tokenCommand(stdout, stderr),
		certsCommand(stdout),
		manCommand(root, stdout),
		probeCommand(stdout),
		storeCommand(stdout, stderr),
		&cobra.Command{
			Use:     "version",
			Short:   "print version, commit and Go version",
			Example: "  pgwarden version",
			Args:    noArgs,
			Run:     func(cmd *cobra.Command, args []string) { fmt.Fprintln(stdout, "pgwarden", versionString()) },
		},
	)
	// Unknown commands and subcommands are usage mistakes.
	for _, c := range append(root.Commands(), root) {
		if c.Args == nil {
			c.Args = noArgs
		}
		c.SilenceUsage, c.SilenceErrors = true, true
		c.SetFlagErrorFunc(root.FlagErrorFunc())
	}
	return root
}

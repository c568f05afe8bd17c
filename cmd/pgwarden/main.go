// Command pgwarden is an authentication gateway for PostgreSQL.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/pgwarden/pgwarden/backend"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

const usage = `usage: pgwarden <command> [options]

commands:
  serve         [-c config.toml]   run the gateway (the default command)
  check         [-c config.toml]   validate config, users and HBA; print the rule table
  explain       [-c config.toml] --protocol pg|http --user U --database D --address IP|local [--ssl] [--replication]
  hash-password [--algo scram-sha-256|bcrypt|pbkdf2-sha512|argon2id]
  user          add|passwd|del|list [-c config.toml] NAME [--admin] [--backend-user ROLE] [--password-stdin]
  token create  [-c config.toml] --user NAME [--expire 90d]
  certs init    --dir DIR [--hosts localhost,127.0.0.1,::1] [--client NAME...]
  version

-c defaults to $PGWARDEN_CONFIG, else ./config.toml.
`

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

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(args, stderr)
	case "check":
		err = cmdCheck(args, stdout)
	case "explain":
		err = cmdExplain(args, stdout)
	case "hash-password":
		err = cmdHashPassword(args, stdin, stdout, stderr)
	case "user":
		err = cmdUser(args, stdin, stdout, stderr)
	case "token":
		err = cmdToken(args, stdout, stderr)
	case "certs":
		err = cmdCerts(args, stdout)
	case "version":
		fmt.Fprintln(stdout, "pgwarden", versionString())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		err = usageErr("unknown command %q", cmd)
	}
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "pgwarden:", err)
	var ue errUsage
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, usage)
		}
		return 2
	}
	return 1
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// newFlags makes a flag set that reports errors instead of exiting.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// configFlag adds -c with its default from $PGWARDEN_CONFIG.
func configFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("PGWARDEN_CONFIG")
	if def == "" {
		def = "config.toml"
	}
	return fs.String("c", def, "configuration file")
}

// parseFlags parses flags given before, between or after positional
// arguments ("user add NAME --admin"), returning the positionals.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageErr("%s: %v", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

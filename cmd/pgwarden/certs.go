package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/pgwarden/pgwarden/certs"
)

// stringsFlag collects a repeatable flag ("--client a --client b").
type stringsFlag []string

func (s *stringsFlag) String() string { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}

func cmdCerts(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "init" {
		return usageErr("usage: pgwarden certs init --dir DIR [--hosts localhost,127.0.0.1,::1] [--client NAME...]")
	}
	fs := newFlags("certs init")
	dir := fs.String("dir", "", "folder to write into")
	hosts := fs.String("hosts", strings.Join(certs.DefaultHosts, ","), "server certificate names and addresses")
	var clients stringsFlag
	fs.Var(&clients, "client", "client certificate to make (CN = NAME); repeatable")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	// Also accept names after the flags: --client alice bob.
	clients = append(clients, pos...)
	if *dir == "" {
		return usageErr("certs init needs --dir")
	}
	var hostList []string
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hostList = append(hostList, h)
		}
	}
	if err := certs.Init(*dir, hostList, clients); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote ca.crt ca.key server.crt server.key")
	for _, c := range clients {
		fmt.Fprintf(stdout, " %s.crt %s.key", c, c)
	}
	fmt.Fprintf(stdout, " in %s\n", *dir)
	return nil
}

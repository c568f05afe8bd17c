package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/pgwarden/pgwarden/certs"
)

func certsInit(dir, hosts string, clients []string, stdout io.Writer) error {
	if dir == "" {
		return usageErr("certs init needs --dir")
	}
	var hostList []string
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hostList = append(hostList, h)
		}
	}
	if err := certs.Init(dir, hostList, clients); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote ca.crt ca.key server.crt server.key")
	for _, c := range clients {
		fmt.Fprintf(stdout, " %s.crt %s.key", c, c)
	}
	fmt.Fprintf(stdout, " in %s\n", dir)
	return nil
}

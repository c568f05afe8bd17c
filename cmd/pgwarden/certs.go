package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

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

func certsRevoke(dir string, args []string, stdout io.Writer) error {
	if dir == "" {
		return usageErr("certs revoke needs --dir")
	}
	files := make([]string, len(args))
	for i, a := range args {
		files[i] = a
		if !strings.HasSuffix(a, ".crt") && !strings.ContainsRune(a, filepath.Separator) {
			files[i] = filepath.Join(dir, a+".crt")
		}
	}
	serials, err := certs.Revoke(dir, files, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %d certificate(s) revoked, current for a year\n", filepath.Join(dir, "ca.crl"), len(serials))
	return nil
}

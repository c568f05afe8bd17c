package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/config"
)

// Address is where a PostgreSQL server at host and port listens: a unix
// socket (.s.PGSQL.PORT in the folder host names, as libpq reads a host
// that starts with a slash) or TCP.
func Address(host string, port int) (network, addr string) {
	if strings.HasPrefix(host, "/") {
		return "unix", filepath.Join(host, fmt.Sprintf(".s.PGSQL.%d", port))
	}
	return "tcp", net.JoinHostPort(host, fmt.Sprint(port))
}

// Ping tells whether the [backend] server answers as PostgreSQL does, without
// logging in: it sends an SSLRequest and expects 'S' or 'N'. /readyz uses it.
func Ping(ctx context.Context, cfg *config.Config) error {
	timeout := cfg.Backend.ConnectTimeout.Duration
	network, addr := Address(cfg.Backend.Host, cfg.Backend.Port)
	c, err := (&net.Dialer{Timeout: timeout}).DialContext(ctx, network, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	req, err := (&pgproto3.SSLRequest{}).Encode(nil)
	if err != nil {
		return err
	}
	if _, err := c.Write(req); err != nil {
		return err
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		return err
	}
	if b[0] != 'S' && b[0] != 'N' {
		return errors.New("not a PostgreSQL server")
	}
	return nil
}

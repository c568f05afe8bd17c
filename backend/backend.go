// Package backend says where and as whom a proven client connects to
// PostgreSQL: database routing, role mapping, the password to present, and
// the pgconn configuration with the [backend] TLS settings. Both frontends
// use it.
package backend

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
)

// Target is one backend login.
type Target struct {
	Host     string
	Port     int
	Database string
	Role     string
	Password string
}

// Route applies [[databases]] to db and maps the proven user (nil for a
// trusted name without a users-file entry) to its backend role and password:
// the user's backend_password, else [backend] password, else, when
// passthrough is on, clientPassword.
func Route(cfg *config.Config, name string, u *authcore.User, clientPassword, db string) Target {
	t := Target{Host: cfg.Backend.Host, Port: cfg.Backend.Port, Database: db, Role: name}
	for _, d := range cfg.Databases {
		if d.Name == db {
			if d.BackendDBName != "" {
				t.Database = d.BackendDBName
			}
			if d.Host != "" {
				t.Host = d.Host
			}
			if d.Port != 0 {
				t.Port = d.Port
			}
			break
		}
	}
	t.Password = cfg.Backend.Password
	if u != nil {
		t.Role = u.BackendRole()
		if u.BackendPassword != "" {
			t.Password = u.BackendPassword
		}
	}
	if t.Password == "" && cfg.Backend.Passthrough {
		t.Password = clientPassword
	}
	return t
}

// Config builds the pgconn configuration for t. The connection string
// carries only what pgconn must see while parsing (its TLS fallbacks);
// identity and runtime parameters are set afterwards, so no client-supplied
// value is ever parsed as connection-string syntax.
func Config(cfg *config.Config, t Target, params map[string]string) (*pgconn.Config, error) {
	b := &cfg.Backend
	kv := []string{
		"host=" + quote(t.Host),
		fmt.Sprintf("port=%d", t.Port),
		"sslmode=" + quote(b.SSLMode),
	}
	for _, o := range []struct{ k, v string }{{"sslrootcert", b.SSLRootCert}, {"sslcert", b.SSLCert}, {"sslkey", b.SSLKey}} {
		if o.v != "" {
			kv = append(kv, o.k+"="+quote(o.v))
		}
	}
	pc, err := pgconn.ParseConfig(strings.Join(kv, " "))
	if err != nil {
		return nil, err
	}
	pc.User = t.Role
	pc.Password = t.Password
	pc.Database = t.Database
	pc.ConnectTimeout = b.ConnectTimeout.Duration
	pc.RuntimeParams = make(map[string]string, len(params))
	for k, v := range params {
		if k != "user" && k != "database" {
			pc.RuntimeParams[k] = v
		}
	}
	return pc, nil
}

func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// IsServerError reports whether err is an error the backend itself sent.
func IsServerError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
}

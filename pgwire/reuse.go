package pgwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/config"
)

// poolLimits reads the [backend] pool settings in force.
func poolLimits(c *config.Config) backend.PoolLimits {
	return backend.PoolLimits{
		PerKey:      c.Backend.PoolSize,
		Max:         c.Backend.MaxBackendConnections,
		IdleTimeout: c.Backend.IdleTimeout.Duration,
		MaxLifetime: c.Backend.MaxLifetime.Duration,
	}
}

// resetBackend runs reset_query on a backend whose client left it idle,
// reading exactly up to the ReadyForQuery (nothing more, so nothing the
// backend sends later is lost) and keeping ParameterStatus changes. Any
// error, or a status other than idle, means the backend is not reused.
func resetBackend(s *backend.Session, query string, timeout time.Duration) error {
	s.Conn.SetDeadline(time.Now().Add(timeout))
	defer s.Conn.SetDeadline(noDeadline)
	msg, err := (&pgproto3.Query{String: query}).Encode(nil)
	if err != nil {
		return err
	}
	if _, err := s.Conn.Write(msg); err != nil {
		return err
	}
	var hdr [5]byte
	var failed error
	for {
		if _, err := io.ReadFull(s.Conn, hdr[:]); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		if n < 0 || n > 1<<20 {
			return errors.New("backend sent a malformed message during reset")
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(s.Conn, body); err != nil {
			return err
		}
		switch hdr[0] {
		case 'S':
			if name, value, ok := parseParameterStatus(body); ok {
				s.Params[name] = value
			}
		case 'E':
			failed = fmt.Errorf("reset_query failed")
		case 'Z':
			if failed != nil {
				return failed
			}
			if n != 1 || body[0] != 'I' {
				return errors.New("backend not idle after reset")
			}
			return nil
		}
	}
}

// alive reports whether a parked backend still looks usable: nothing to
// read, not closed. A backend that restarted while a connection sat parked
// has sent a FATAL and closed it.
func alive(c net.Conn) bool {
	st := peekSocket(c)
	return st == socketQuiet || st == socketUnknown
}

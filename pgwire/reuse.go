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

// resetBackend runs reset_query on a backend whose client left it idle.
// Any error, or a status other than idle after it, means the backend is not
// reused.
func resetBackend(s *backend.Session, query string, timeout time.Duration) error {
	_, err := simpleQuery(s, query, timeout)
	if err != nil {
		return fmt.Errorf("reset_query: %w", err)
	}
	return nil
}

// settingsCurrent checks a parked backend before it is handed out: the role
// and database settings that apply to it now must be those it applied at
// login (see backend.SettingsQuery), else the client would not get what a
// fresh session gets. The round trip also proves the backend alive.
func settingsCurrent(s *backend.Session, timeout time.Duration) error {
	v, err := simpleQuery(s, backend.SettingsQuery, timeout)
	switch {
	case err != nil:
		return fmt.Errorf("settings query: %w", err)
	case v == nil:
		return errors.New("unexpected answer to the settings query")
	case string(v) != s.Settings:
		return errors.New("role or database settings changed since the backend started")
	}
	return nil
}

// simpleQuery runs one simple-protocol query on a backend pgwarden holds
// between clients, reading exactly up to its ReadyForQuery (nothing more,
// so nothing the backend sends later is lost) and keeping ParameterStatus
// changes. It returns the first column of a one-row, one-column answer
// (nil for any other shape); an ErrorResponse, or a status other than idle
// after it, is an error.
func simpleQuery(s *backend.Session, query string, timeout time.Duration) ([]byte, error) {
	s.Conn.SetDeadline(time.Now().Add(timeout))
	defer s.Conn.SetDeadline(noDeadline)
	msg, err := (&pgproto3.Query{String: query}).Encode(nil)
	if err != nil {
		return nil, err
	}
	if _, err := s.Conn.Write(msg); err != nil {
		return nil, err
	}
	var hdr [5]byte
	var failed error
	var value []byte
	rows := 0
	for {
		if _, err := io.ReadFull(s.Conn, hdr[:]); err != nil {
			return nil, err
		}
		n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		if n < 0 || n > 1<<20 {
			return nil, errors.New("backend sent a malformed message")
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(s.Conn, body); err != nil {
			return nil, err
		}
		switch hdr[0] {
		case 'S':
			if name, value, ok := parseParameterStatus(body); ok {
				s.Params[name] = value
			}
		case 'E':
			failed = errors.New("the backend answered with an error")
		case 'D':
			rows++
			value = singleTextColumn(body)
		case 'Z':
			if failed != nil {
				return nil, failed
			}
			if n != 1 || body[0] != 'I' {
				return nil, errors.New("backend not idle")
			}
			if rows != 1 {
				value = nil
			}
			return value, nil
		}
	}
}

// singleTextColumn reads a DataRow of one non-null column; nil otherwise.
func singleTextColumn(body []byte) []byte {
	if len(body) < 6 || binary.BigEndian.Uint16(body) != 1 {
		return nil
	}
	n := int32(binary.BigEndian.Uint32(body[2:]))
	if n < 0 || int(n) != len(body)-6 {
		return nil
	}
	return body[6:]
}

// alive reports whether a parked backend still looks usable: nothing to
// read, not closed. A backend that restarted while a connection sat parked
// has sent a FATAL and closed it.
func alive(c net.Conn) bool {
	st := peekSocket(c)
	return st == socketQuiet || st == socketUnknown
}

package pgwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"golang.org/x/sys/unix"

	"github.com/pgwarden/pgwarden/backend"
)

// settingsCheckTimeout bounds the check of a parked backend's settings as
// it is handed out.
const settingsCheckTimeout = 5 * time.Second

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
// fresh session gets. The round trip also proves the backend alive, and
// the same statement seeds random() afresh (see backend.ReseedQuery).
func settingsCurrent(s *backend.Session, timeout time.Duration) error {
	v, err := simpleQuery(s, backend.SettingsQueryReseeding(), timeout)
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
	// The query's answer arrives after it, so the wait ends even when
	// the backend had sent something before (it is read with the answer).
	if err := writeAwaitingAnswer(s.Conn, msg); err != nil {
		return nil, err
	}
	a := queryAnswer{s: s}
	if p, ok := answerBufPool.Get().(*[]byte); ok {
		a.buf = *p
	}
	defer func() { answerBufPool.Put(&a.buf) }()
	for !a.done {
		// Most answers arrive whole: a look at the socket finds every
		// message up to ReadyForQuery, and one read takes exactly those
		// bytes (two system calls, where a header-then-body read of each
		// message costs two per message).
		if n := peekAnswer(s.Conn, &a.buf); n > 0 {
			if _, err := io.ReadFull(s.Conn, a.buf[:n]); err != nil {
				return nil, err
			}
			if err := a.feed(a.buf[:n]); err != nil {
				return nil, err
			}
			continue
		}
		// Not a socket pgwarden can look into (TLS to the backend), or a
		// message larger than the look: one message at a time.
		var hdr [5]byte
		if _, err := io.ReadFull(s.Conn, hdr[:]); err != nil {
			return nil, err
		}
		n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		if n < 0 || n > 1<<20 {
			return nil, errors.New("backend sent a malformed message")
		}
		body := make([]byte, 5+n)
		copy(body, hdr[:])
		if _, err := io.ReadFull(s.Conn, body[5:]); err != nil {
			return nil, err
		}
		if err := a.feed(body); err != nil {
			return nil, err
		}
	}
	return a.value, a.err
}

// queryAnswer follows the messages of one simple query's answer.
type queryAnswer struct {
	s      *backend.Session
	buf    []byte
	failed error
	value  []byte
	rows   int
	done   bool
	err    error
}

// feed takes whole messages; the last may be ReadyForQuery.
func (a *queryAnswer) feed(b []byte) error {
	for len(b) >= 5 && !a.done {
		n := int(binary.BigEndian.Uint32(b[1:])) - 4
		if n < 0 || n > 1<<20 || 5+n > len(b) {
			return errors.New("backend sent a malformed message")
		}
		typ, body := b[0], b[5:5+n]
		b = b[5+n:]
		switch typ {
		case 'S':
			if name, value, ok := parseParameterStatus(body); ok {
				a.s.SetParam(name, value)
			}
		case 'E':
			a.failed = errors.New("the backend answered with an error")
		case 'D':
			a.rows++
			a.value = nil
			if col := singleTextColumn(body); col != nil {
				// Non-nil even when empty: '' is an answer.
				a.value = append(make([]byte, 0, len(col)), col...)
			}
		case 'Z':
			a.done = true
			switch {
			case a.failed != nil:
				a.value, a.err = nil, a.failed
			case n != 1 || body[0] != 'I':
				a.value, a.err = nil, errors.New("backend not idle")
			case a.rows != 1:
				a.value = nil
			}
		}
	}
	return nil
}

var answerBufPool sync.Pool

// peekAnswerSize is how much of an answer one look at the socket sees.
const peekAnswerSize = 4 << 10

// peekAnswer waits for bytes on c (within its deadline) and looks at them
// without reading: it returns the length of the whole messages seen, up to
// and including a ReadyForQuery, so that reading that many bytes takes
// nothing that comes after the answer. 0: c is not a plain socket, it
// failed (the read that follows reports why), or its first message is
// larger than the look.
func peekAnswer(c net.Conn, buf *[]byte) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	if cap(*buf) < peekAnswerSize {
		*buf = make([]byte, peekAnswerSize)
	}
	b := (*buf)[:peekAnswerSize]
	whole := 0
	err = rc.Read(func(fd uintptr) bool {
		whole = 0
		n, _, err := unix.Recvfrom(int(fd), b, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return false // wait for readiness
		}
		if err != nil || n == 0 {
			return true
		}
		for p := b[:n]; len(p) >= 5; {
			m := int(binary.BigEndian.Uint32(p[1:])) + 1
			if m < 5 || m > len(p) {
				break
			}
			whole += m
			if p[0] == 'Z' {
				return true
			}
			p = p[m:]
		}
		// No ReadyForQuery yet: when the look is full, take the whole
		// messages in it (none: the first is larger, read it alone);
		// else wait for the rest.
		return n == len(b)
	})
	if err != nil {
		return 0
	}
	return whole
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

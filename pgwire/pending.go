package pgwire

import (
	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/internal/admission"
)

// noteEviction counts a connection closed to make room and says so in the
// log, at most once per logpace.Every, with how many since the last line.
func (s *Server) noteEviction(victim *admission.Client) {
	n, due := s.evictions.Add()
	if !due {
		return
	}
	s.log.Warn("max_connections reached: clients still authenticating were closed to make room for other sources' (the source holding the most goes first)",
		zap.String("address", victim.Addr), zap.Int64("closed", n))
}

// source names the source c counts as, for the cancel guard and for
// making room at max_connections: an IPv6 client its network, as the
// throttle counts it; the unix socket's clients are one, and so are the
// clients a proxy forwarded without naming them (see proxyClient).
func (c *conn) source() string { return c.srv.throttle.SourceOf(c.addr, c.local) }

// waitToAuthenticate records c as a client still authenticating, against
// its source (see admission.Pending, shared with the HTTP frontend).
func (c *conn) waitToAuthenticate() {
	c.adm = c.srv.pending.Add(c.source(), c.addrString(), func() {
		// The connection's goroutine sees its socket closed.
		c.raw.Close()
	})
}

// makeRoom records c as waiting to authenticate and, the server being at
// max_connections, ends the client (a wire connection or an HTTP request
// of another source) that c takes the place of; false when there is none
// (c is then refused as before).
func (s *Server) makeRoom(c *conn) bool {
	c.waitToAuthenticate()
	victim := s.pending.EvictFor(c.adm)
	if victim == nil {
		return false
	}
	s.noteEviction(victim)
	return true
}

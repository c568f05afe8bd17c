package pgwire

import (
	"net"
	"strconv"

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
// throttle counts it; a client of the unix socket its OS user (see
// localSource), and the clients a proxy forwarded without naming them one
// (see proxyClient).
func (c *conn) source() string {
	if c.src == "" {
		c.src = c.srv.throttle.SourceOf(c.addr, c.local)
	}
	return c.src
}

// localSource names a client of the unix socket by its OS user,
// "local:UID" from SO_PEERCRED ("local" where that is not known), for the
// throttle, the cancel guard and making room at max_connections, and in
// the logs. The unix socket's clients used to be one, and it is in /tmp
// by default: on a machine of several users, any of them could send wrong
// cancel keys until every local client's cancel requests were ignored,
// crowd out the others' logins at max_connections, or hold up another
// user's password logins on the socket with wrong passwords for their
// name.
func localSource(raw net.Conn) string {
	if uid, err := peerUID(raw); err == nil {
		return "local:" + strconv.FormatUint(uint64(uid), 10)
	}
	return "local"
}

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

package pgwire

import (
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/hba"
)

// pendingConns knows, per source, the connections that have not
// authenticated yet, oldest first. At max_connections a new connection is
// refused (53300), so one source that keeps max_connections connections
// waiting (each may stall for auth_timeout) locked every other client out
// for as long as it kept opening them: a thousand sockets from one
// address were enough. Now the new connection of another source takes
// the place of the oldest waiting connection of the source that holds the
// most, when that source holds more than the newcomer's would; a source
// gains nothing from crowding out its own connections, nor from many
// sources holding one each. Authenticated sessions are never touched, and
// below the limit nothing changes.
type pendingConns struct {
	mu       sync.Mutex
	bySource map[string][]*conn
}

func newPendingConns() *pendingConns {
	return &pendingConns{bySource: make(map[string][]*conn)}
}

// add records c, from src, as waiting to authenticate.
func (p *pendingConns) add(c *conn, src string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.pendingSrc = src
	c.pending = true
	p.bySource[src] = append(p.bySource[src], c)
}

// done records that c no longer waits (it authenticated, or it ends). It
// reports false when c was evicted meanwhile: it must not go on.
func (p *pendingConns) done(c *conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.evicted {
		return false
	}
	if c.pending {
		p.drop(c)
	}
	return true
}

func (p *pendingConns) drop(c *conn) {
	c.pending = false
	list := slices.DeleteFunc(p.bySource[c.pendingSrc], func(o *conn) bool { return o == c })
	if len(list) == 0 {
		delete(p.bySource, c.pendingSrc)
	} else {
		p.bySource[c.pendingSrc] = list
	}
}

// evictFor picks the connection that newcomer (already added) takes the
// place of: the oldest waiting connection of the source that holds the
// most, if that source is another and holds more than newcomer's. The
// connection picked is marked evicted and forgotten; its owner closes it.
// nil: the newcomer is refused as before.
func (p *pendingConns) evictFor(newcomer *conn) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	mine := len(p.bySource[newcomer.pendingSrc])
	top, most := "", 0
	for src, list := range p.bySource {
		if len(list) > most {
			top, most = src, len(list)
		}
	}
	if top == "" || top == newcomer.pendingSrc || most <= mine {
		return nil
	}
	victim := p.bySource[top][0]
	p.drop(victim)
	victim.evicted = true
	return victim
}

// noteEviction counts a connection closed to make room and says so in the
// log, at most once per logpace.Every, with how many since the last line.
func (s *Server) noteEviction(victim *conn) {
	n, due := s.evictions.Add()
	if !due {
		return
	}
	s.log.Warn("max_connections reached: connections still authenticating were closed to make room for other sources' (the source holding the most goes first)",
		zap.String("address", victim.addrString()), zap.Int64("closed", n))
}

// source names the source c counts as, for the cancel guard and for
// making room at max_connections: an IPv6 client its network, as the
// throttle counts it; the unix socket's clients are one, and so are the
// clients a proxy forwarded without naming them (see proxyClient).
func (c *conn) source() string {
	if c.local || !c.addr.IsValid() {
		return hba.AddrText(c.addr, c.local)
	}
	src := c.addr.String()
	if c.srv.throttle != nil {
		src = c.srv.throttle.Source(src)
	}
	return src
}

// makeRoom records c as waiting to authenticate and, the server being at
// max_connections, closes the connection c takes the place of; false when
// there is none (c is then refused as before).
func (s *Server) makeRoom(c *conn) bool {
	s.pending.add(c, c.source())
	victim := s.pending.evictFor(c)
	if victim == nil {
		return false
	}
	// The victim's goroutine sees its socket closed; c is served in its
	// place.
	victim.raw.Close()
	s.noteEviction(victim)
	return true
}

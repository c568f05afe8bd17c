package backend

import (
	"context"
	"crypto/tls"
	"net"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
)

// The HTTP pools' backend connections count against max_backend_connections
// with the wire's (CountAgainst). Before, only the wire's did: one user
// sending a burst of requests to a few databases left 10 idle connections
// per (role, database) for idle_timeout, past the bound an operator had set
// below PostgreSQL's max_connections, so that wire logins then found
// PostgreSQL full.

// countedConn is the socket of an HTTP pool's backend connection, counted
// from its dial until it is closed, whichever way that happens (the
// pool's close, an error, a failed login, shedding).
type countedConn struct {
	net.Conn
	owner *HTTPPools
	once  sync.Once
}

// NetConn is the socket below, for a look into it (sockpeek) that must
// not read through the count.
func (c *countedConn) NetConn() net.Conn { return c.Conn }

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.owner.forgetCounted(c) })
	return err
}

// connUse is what a counted connection is doing, as far as shedding cares.
type connUse uint8

const (
	connBusy connUse = iota // dialing, logging in, or lent to a request
	connIdle                // in its pool, free
	connShed                // closed to make room; its pool will drop it
)

// CountAgainst counts the HTTP pools' connections against budget, the
// wire's pool, with the limits in force, and lets budget close an idle
// HTTP connection to make room for a login. Call it before the first Get.
func (p *HTTPPools) CountAgainst(budget *Pool, limits func() PoolLimits) {
	p.budget, p.limits = budget, limits
	budget.SetShed(p.shedIdle)
}

// dialCounted wraps a pool's dial: each socket takes a reservation first
// (closing a parked wire backend or an idle HTTP connection at the limit,
// else waiting within connect_timeout for a release) and gives it back
// when it closes.
func (p *HTTPPools) dialCounted(dial pgconn.DialFunc) pgconn.DialFunc {
	if p.budget == nil {
		return dial
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := p.budget.reserveHTTP(ctx, p.limits()); err != nil {
			return nil, err
		}
		c, err := dial(ctx, network, addr)
		if err != nil {
			p.budget.releaseHTTP()
			return nil, err
		}
		cc := &countedConn{Conn: c, owner: p}
		p.useMu.Lock()
		p.uses[cc] = connBusy
		p.useMu.Unlock()
		return cc, nil
	}
}

func (p *HTTPPools) forgetCounted(c *countedConn) {
	p.useMu.Lock()
	delete(p.uses, c)
	p.useMu.Unlock()
	p.budget.releaseHTTP()
}

// counted is the counted socket under a pool connection (under TLS too),
// or nil when the pools count nothing.
func counted(pc *pgconn.PgConn) *countedConn {
	nc := pc.Conn()
	for range 3 { // the message gate over TLS over the count
		if cc, ok := nc.(*countedConn); ok {
			return cc
		}
		if tc, ok := nc.(*tls.Conn); ok {
			nc = tc.NetConn()
		} else if gc, ok := nc.(*gatedConn); ok {
			nc = gc.NetConn()
		}
	}
	cc, _ := nc.(*countedConn)
	return cc
}

// markBusy takes a connection out of shedding's reach as it is handed out;
// false when it was shed (its socket is closed: the pool drops it and
// takes another).
func (p *HTTPPools) markBusy(pc *pgconn.PgConn) bool {
	cc := counted(pc)
	if cc == nil {
		return true // not counted, never shed
	}
	p.useMu.Lock()
	defer p.useMu.Unlock()
	if u, ok := p.uses[cc]; !ok || u == connShed {
		return false
	}
	p.uses[cc] = connBusy
	return true
}

// markIdle says a connection goes back to its pool, free.
func (p *HTTPPools) markIdle(pc *pgconn.PgConn) {
	cc := counted(pc)
	if cc == nil {
		return
	}
	p.useMu.Lock()
	if u, ok := p.uses[cc]; ok && u == connBusy {
		p.uses[cc] = connIdle
	}
	p.useMu.Unlock()
}

// shedIdle closes one idle connection of any pool, which gives its
// reservation back before it returns; false when none is idle.
func (p *HTTPPools) shedIdle() bool {
	p.useMu.Lock()
	var victim *countedConn
	for c, u := range p.uses {
		if u == connIdle {
			victim = c
			break
		}
	}
	if victim != nil {
		p.uses[victim] = connShed
	}
	p.useMu.Unlock()
	if victim == nil {
		return false
	}
	victim.Close()
	return true
}

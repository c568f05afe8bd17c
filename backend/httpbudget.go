package backend

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
)

// The HTTP pools' backend connections count against max_backend_connections
// with the wire's (CountAgainst). Before, only the wire's did: one user
// sending a burst of requests to a few databases left 10 idle connections
// per (role, database) for idle_timeout, past the bound an operator had set
// below PostgreSQL's max_connections, so that wire logins then found
// PostgreSQL full.

// poolSocket is the socket of an HTTP pool's backend connection, below
// TLS. It is counted from its dial until it is closed, whichever way that
// happens (the pool's close, an error, a failed login, shedding), when the
// pools count against max_backend_connections (counting), and it keeps the
// connection's message gate (see messageGate), whose room its close gives
// back.
type poolSocket struct {
	net.Conn
	owner    *HTTPPools
	counting bool
	gate     atomic.Pointer[messageGate]
	once     sync.Once
}

// NetConn is the socket below, for a look into it (sockpeek) that must
// not read through the count.
func (c *poolSocket) NetConn() net.Conn { return c.Conn }

func (c *poolSocket) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if g := c.gate.Load(); g != nil {
			g.close()
		}
		if c.counting {
			c.owner.forgetCounted(c)
		}
	})
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

// dialCounted wraps a pool's dial in a poolSocket. When the pools count
// (CountAgainst), each socket takes a reservation first (closing a parked
// wire backend or an idle HTTP connection at the limit, else waiting
// within connect_timeout for a release) and gives it back when it closes.
func (p *HTTPPools) dialCounted(dial pgconn.DialFunc) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		counting := p.budget != nil
		if counting {
			if err := p.budget.reserveHTTP(ctx, p.limits()); err != nil {
				return nil, err
			}
		}
		c, err := dial(ctx, network, addr)
		if err != nil {
			if counting {
				p.budget.releaseHTTP()
			}
			return nil, err
		}
		ps := &poolSocket{Conn: c, owner: p, counting: counting}
		if counting {
			p.useMu.Lock()
			p.uses[ps] = connBusy
			p.useMu.Unlock()
		}
		return ps, nil
	}
}

func (p *HTTPPools) forgetCounted(c *poolSocket) {
	p.useMu.Lock()
	delete(p.uses, c)
	p.useMu.Unlock()
	p.budget.releaseHTTP()
}

// poolSocketOf is the socket under a pool connection (under TLS too), or
// nil for a connection no HTTP pool dialed.
func poolSocketOf(nc net.Conn) *poolSocket {
	for range 3 {
		switch c := nc.(type) {
		case *poolSocket:
			return c
		case *tls.Conn:
			nc = c.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// counted is the counted socket under a pool connection, or nil when the
// pools count nothing.
func counted(pc *pgconn.PgConn) *poolSocket {
	if ps := poolSocketOf(pc.Conn()); ps != nil && ps.counting {
		return ps
	}
	return nil
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
	var victim *poolSocket
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

// Package admission shares server.max_connections fairly between sources
// while clients authenticate. Wire connections and HTTP requests count
// against one bound; each that has not authenticated yet is recorded here
// by its source, and at the bound a newcomer of another source takes the
// place of the oldest waiting client of the source that holds the most.
package admission

import (
	"slices"
	"sync"
)

// Pending knows, per source, the clients (wire connections, HTTP
// requests) that have not authenticated yet, oldest first. At
// max_connections a new client is refused (53300, HTTP 503), so one source
// that keeps max_connections clients waiting (a wire connection may stall
// for auth_timeout, an HTTP request may send its body for the read
// timeout) locked every other client out for as long as it kept them
// coming. Now a newcomer of another source takes the place of the oldest
// waiting client of the source that holds the most, when that source holds
// more than the newcomer's would; a source gains nothing from crowding out
// its own clients, nor from many sources holding one each. Authenticated
// clients are never touched, and below the limit nothing changes.
type Pending struct {
	mu       sync.Mutex
	bySource map[string][]*Client
}

// Client is one waiting client.
type Client struct {
	src string
	// Addr names the client in the log line about making room.
	Addr             string
	evict            func()
	waiting, evicted bool
}

// Source is the source the client counts as (a nil Client has none).
func (c *Client) Source() string {
	if c == nil {
		return ""
	}
	return c.src
}

// New returns an empty Pending.
func New() *Pending {
	return &Pending{bySource: make(map[string][]*Client)}
}

// Add records a client of source src as waiting to authenticate; evict
// ends it (closes its connection, cancels its request) when another
// source's client takes its place.
func (p *Pending) Add(src, addr string, evict func()) *Client {
	c := &Client{src: src, Addr: addr, evict: evict, waiting: true}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bySource[src] = append(p.bySource[src], c)
	return c
}

// Done records that c no longer waits (it authenticated, or it ends). It
// reports false when c was evicted meanwhile: it must not go on. A nil c
// was never recorded.
func (p *Pending) Done(c *Client) bool {
	if c == nil {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.evicted {
		return false
	}
	if c.waiting {
		p.drop(c)
	}
	return true
}

func (p *Pending) drop(c *Client) {
	c.waiting = false
	list := slices.DeleteFunc(p.bySource[c.src], func(o *Client) bool { return o == c })
	if len(list) == 0 {
		delete(p.bySource, c.src)
	} else {
		p.bySource[c.src] = list
	}
}

// EvictFor picks the client that newcomer (already added) takes the
// place of: the oldest waiting client of the source that holds the most,
// if that source is another and holds more than newcomer's. The client
// picked is forgotten and ended (its evict runs, outside the lock). nil:
// the newcomer is refused as before.
func (p *Pending) EvictFor(newcomer *Client) *Client {
	p.mu.Lock()
	mine := len(p.bySource[newcomer.src])
	top, most := "", 0
	for src, list := range p.bySource {
		if len(list) > most {
			top, most = src, len(list)
		}
	}
	if top == "" || top == newcomer.src || most <= mine {
		p.mu.Unlock()
		return nil
	}
	victim := p.bySource[top][0]
	p.drop(victim)
	victim.evicted = true
	p.mu.Unlock()
	if victim.evict != nil {
		victim.evict()
	}
	return victim
}

package pgwire

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/config"
)

// cancelVerdict is what an instance tells a peer that forwarded it a
// CancelRequest (see forwardMark): whether the key was one of a session
// it serves. Nobody else is ever told.
type cancelVerdict byte

const (
	verdictNone cancelVerdict = 0   // nothing to tell: not looked at, or a peer further on said nothing
	verdictHit  cancelVerdict = 'Y' // the key was a session's: its backend was asked to cancel
	verdictMiss cancelVerdict = 'N' // no session has that key
)

// cancelRequest handles a CancelRequest: a key of this instance goes to its
// backend; a key carrying another peer's id goes to that peer (see
// forwardsInFlight for why it cannot loop); anything else is ignored
// silently, as PostgreSQL does. from is the client's address (the zero
// Addr when it has none), src the source it counts as (conn.source).
//
// Wrong keys are charged to the source that sent them (see cancelGuard),
// by the instance the source sent them to, also when the key is another
// peer's: that peer says whether the key was right (a verdict), and does
// not charge the forwarding instance itself. forwarded marks a request a
// peer forwarded (see fromPeer): the peer has charged and will charge its
// source, so it is looked at whatever the guard says, and its verdict is
// returned. Before December 2026 the owner charged the forwarding
// instance's address (with proxy_protocol off, the only one it saw), so
// a client sending wrong keys of one peer to another soon had every
// cancel that other forwarded ignored, its genuine clients' too.
func (s *Server) cancelRequest(cfg *config.Config, from netip.Addr, src string, pid uint32, key []byte, forwarded bool) cancelVerdict {
	owner := keyPeer(key)
	if s.cancels.peerID == 0 || owner == s.cancels.peerID {
		// A source past its budget of wrong keys is not listened to;
		// a wrong key is charged to it (see cancelGuard).
		if !forwarded && !s.cancelGuard.allow(src) {
			s.cancelGuard.miss(src)
			return verdictNone
		}
		if s.cancels.forward(pid, key) {
			return verdictHit
		}
		// Perhaps a session of the process this one replaces, which
		// drains; charged as a miss all the same, since that cannot be
		// told from here.
		handToDraining(cfg, pid, key)
		if !forwarded {
			s.chargeWrongKey(src)
		}
		return verdictMiss
	}
	for _, p := range cfg.Peers {
		if uint16(p.ID) != owner {
			continue
		}
		if !forwarded && !s.cancelGuard.allow(src) {
			s.cancelGuard.miss(src)
			return verdictNone
		}
		if !s.forwards.begin(pid, key) {
			s.noteForwardLoop(p)
			return verdictNone
		}
		defer s.forwards.end(pid, key)
		v, err := forwardCancel(p.Address, cfg.Server.ProxyProtocol != "off", from, pid, key)
		if err != nil {
			s.log.Warn("could not forward a cancel request to its peer", zap.Int("to_peer_id", p.ID),
				zap.String("peer", p.Address), zap.Error(err))
		}
		if v == verdictMiss && !forwarded {
			s.chargeWrongKey(src)
		}
		return v
	}
	return verdictNone
}

// chargeWrongKey charges src for a wrong key, and says so in the log once
// that spends its budget.
func (s *Server) chargeWrongKey(src string) {
	if s.cancelGuard.miss(src) {
		s.log.Warn("cancel requests with wrong keys: this source's cancel requests are ignored while it keeps sending them",
			zap.String("address", src), zap.Int("wrong_keys", cancelGuessBurst), zap.Int("per_second_after", cancelGuessRate))
	}
}

// forwardsInFlight are the CancelRequests this instance is forwarding now,
// by pid and key. The owner of a key never forwards it, but a [[peers]]
// address need not lead to the owner: a load balancer's or a service's
// address, or one of this instance's own, brings the request back to a
// non-owner, which forwards it again. Each forward waits for the peer to
// close, so such a loop nests: one 16-byte packet made hundreds of
// connections, until max_connections stopped it and held every slot. A
// request that comes back while its own forward is still in flight is
// dropped, and no genuine cancel is lost: it is that same request, whose
// first forward is already on its way (PgBouncer bounds the same loop
// with a hop count in the key, which would take two more of its random
// bits here).
type forwardsInFlight struct {
	mu sync.Mutex
	m  map[uint64]struct{}
}

func forwardID(pid uint32, key []byte) uint64 {
	return uint64(pid)<<32 | uint64(binary.BigEndian.Uint32(key))
}

// begin records a forward of (pid, key); false when one is in flight.
// Only 4-byte keys carry a peer id, so only those come here.
func (f *forwardsInFlight) begin(pid uint32, key []byte) bool {
	id := forwardID(pid, key)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[id]; ok {
		return false
	}
	if f.m == nil {
		f.m = make(map[uint64]struct{})
	}
	f.m[id] = struct{}{}
	return true
}

// end forgets the forward begin recorded.
func (f *forwardsInFlight) end(pid uint32, key []byte) {
	id := forwardID(pid, key)
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, id)
}

// noteForwardLoop says, at most once per logpace.Every, that a cancel request
// for peer p came back while it was being forwarded.
func (s *Server) noteForwardLoop(p config.Peer) {
	if !s.forwardLoopLog.Due() {
		return
	}
	s.log.Warn("a cancel request came back while this instance was forwarding it to its peer: the peer's address leads to an instance that is not the peer (a load balancer, or this instance itself); list each peer's own address",
		zap.Int("to_peer_id", p.ID), zap.String("peer", p.Address))
}

// forwardMark follows the CancelRequest of a forward, in the same write:
// it asks the peer for its verdict. A peer takes it only from the address
// of one of its own [[peers]] (see fromPeer), so an ordinary client, which
// sends nothing after its CancelRequest, is never answered, and a client
// that sends the mark from elsewhere is charged as any client is. A peer
// of an older version ignores it and answers nothing.
var forwardMark = [4]byte{'P', 'G', 'W', 'F'}

// forwardMarkWait bounds the wait for the mark after a CancelRequest from
// a peer's address: it comes in the same segment, so the wait ends at once
// for a forward and is this short for a client that shares the address.
const forwardMarkWait = 20 * time.Millisecond

// forwardCancel sends the CancelRequest to a peer's Postgres listener and
// returns the peer's verdict (verdictNone when it gave none).
// Peers that read PROXY headers get one first (version 2) carrying the
// original client's address: the peer must list this instance in its
// trusted_proxies, as it lists the load balancer.
func forwardCancel(addr string, withProxy bool, from netip.Addr, pid uint32, key []byte) (cancelVerdict, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return verdictNone, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if withProxy {
		src := net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0))
		dst := c.RemoteAddr().(*net.TCPAddr)
		tp := proxyproto.TCPv4
		if from.Is6() {
			tp = proxyproto.TCPv6
			if dst.IP.To4() != nil {
				dst = &net.TCPAddr{IP: dst.IP.To16(), Port: dst.Port}
			}
		} else if dst.IP.To4() == nil {
			// An IPv4 client forwarded to an IPv6 peer address: say it
			// as a v4-mapped address.
			tp = proxyproto.TCPv6
			src = &net.TCPAddr{IP: src.IP.To16(), Port: 0}
		}
		h := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: tp, SourceAddr: src, DestinationAddr: dst}
		if from.IsValid() && !from.IsUnspecified() {
			if _, err := h.WriteTo(c); err != nil {
				return verdictNone, err
			}
		} else {
			local := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}
			if _, err := local.WriteTo(c); err != nil {
				return verdictNone, err
			}
		}
	}
	if _, err := c.Write(append(backend.CancelRequestPacket(pid, key), forwardMark[:]...)); err != nil {
		return verdictNone, err
	}
	// The peer closes once it has passed the cancel on, after its
	// verdict if it gives one.
	var one [1]byte
	if n, _ := c.Read(one[:]); n == 1 && (cancelVerdict(one[0]) == verdictHit || cancelVerdict(one[0]) == verdictMiss) {
		return cancelVerdict(one[0]), nil
	}
	return verdictNone, nil
}

// readForwardMark reads what follows a CancelRequest that came from a
// peer's address, and reports whether it is forwardMark.
func readForwardMark(in io.Reader, raw net.Conn) bool {
	raw.SetReadDeadline(time.Now().Add(forwardMarkWait))
	var m [len(forwardMark)]byte
	_, err := io.ReadFull(in, m[:])
	return err == nil && m == forwardMark
}

// peerSources are the IP addresses of this instance's [[peers]], those a
// forward comes from: a peer address that names a host is looked up again
// at most every peerSourcesFor, and while one request looks up, the
// others go by the addresses found before.
type peerSources struct {
	mu         sync.Mutex
	cfg        *config.Config
	at         time.Time
	ips        []netip.Addr
	refreshing bool
}

const peerSourcesFor = 30 * time.Second

// fromPeer says whether raw, a client's socket, comes from the address of
// one of cfg's [[peers]] (the socket's own address, not one a PROXY
// header gave).
func (s *Server) fromPeer(cfg *config.Config, raw net.Conn) bool {
	if len(cfg.Peers) == 0 {
		return false
	}
	ta, ok := raw.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return false
	}
	a := ta.AddrPort().Addr().Unmap()
	p := &s.peerSources
	p.mu.Lock()
	ips := p.ips
	refresh := (p.cfg != cfg || time.Since(p.at) > peerSourcesFor) && !p.refreshing
	p.refreshing = p.refreshing || refresh
	p.mu.Unlock()
	if refresh {
		ips = peerIPs(cfg.Peers)
		p.mu.Lock()
		p.cfg, p.at, p.ips, p.refreshing = cfg, time.Now(), ips, false
		p.mu.Unlock()
	}
	return slices.Contains(ips, a)
}

// peerIPs looks up the peers' addresses; a name that does not resolve
// within a second counts for nothing until the next look.
func peerIPs(peers []config.Peer) []netip.Addr {
	var ips []netip.Addr
	for _, p := range peers {
		host, _, err := net.SplitHostPort(p.Address)
		if err != nil {
			continue
		}
		if a, err := netip.ParseAddr(host); err == nil {
			ips = append(ips, a.Unmap())
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		found, _ := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		cancel()
		for _, a := range found {
			ips = append(ips, a.Unmap())
		}
	}
	return ips
}

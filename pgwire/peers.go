package pgwire

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/config"
)

// cancelRequest handles a CancelRequest: a key of this instance goes to its
// backend; a key carrying another peer's id goes to that peer (see
// forwardsInFlight for why it cannot loop); anything else is ignored
// silently, as PostgreSQL does. from is the client's address (the zero
// Addr when it has none), src the source it counts as (conn.source).
func (s *Server) cancelRequest(cfg *config.Config, from netip.Addr, src string, pid uint32, key []byte) {
	owner := keyPeer(key)
	if s.cancels.peerID == 0 || owner == s.cancels.peerID {
		// A source past its budget of wrong keys is not listened to;
		// a wrong key is charged to it (see cancelGuard).
		if !s.cancelGuard.allow(src) {
			s.cancelGuard.miss(src)
			return
		}
		if s.cancels.forward(pid, key) {
			return
		}
		// Perhaps a session of the process this one replaces, which
		// drains; charged as a miss all the same, since that cannot be
		// told from here.
		handToDraining(cfg, pid, key)
		if s.cancelGuard.miss(src) {
			s.log.Warn("cancel requests with wrong keys: this source's cancel requests are ignored while it keeps sending them",
				zap.String("address", src), zap.Int("wrong_keys", cancelGuessBurst), zap.Int("per_second_after", cancelGuessRate))
		}
		return
	}
	for _, p := range cfg.Peers {
		if uint16(p.ID) == owner {
			if !s.forwards.begin(pid, key) {
				s.noteForwardLoop(p)
				return
			}
			defer s.forwards.end(pid, key)
			if err := forwardCancel(p.Address, cfg.Server.ProxyProtocol != "off", from, pid, key); err != nil {
				s.log.Warn("could not forward a cancel request to its peer", zap.Int("to_peer_id", p.ID),
					zap.String("peer", p.Address), zap.Error(err))
			}
			return
		}
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

// forwardCancel sends the CancelRequest to a peer's Postgres listener.
// Peers that read PROXY headers get one first (version 2) carrying the
// original client's address: the peer must list this instance in its
// trusted_proxies, as it lists the load balancer.
func forwardCancel(addr string, withProxy bool, from netip.Addr, pid uint32, key []byte) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
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
				return err
			}
		} else {
			local := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}
			if _, err := local.WriteTo(c); err != nil {
				return err
			}
		}
	}
	// The peer answers nothing and closes once it has passed the cancel
	// on; DeliverCancel waits for that.
	return backend.DeliverCancel(c, pid, key)
}

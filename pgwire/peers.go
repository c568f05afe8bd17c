package pgwire

import (
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/config"
)

// cancelRequest handles a CancelRequest: a key of this instance goes to its
// backend; a key carrying another peer's id goes to that peer, once (the
// owner never forwards its own keys, so nothing loops); anything else is
// ignored silently, as PostgreSQL does. from is the client's address (the
// zero Addr when it has none), src the source it counts as (conn.source).
func (s *Server) cancelRequest(cfg *config.Config, from netip.Addr, src string, pid uint32, key []byte) {
	owner := keyPeer(key)
	if s.cancels.peerID == 0 || owner == s.cancels.peerID {
		// A source past its budget of wrong keys is not listened to;
		// a wrong key is charged to it (see cancelGuard).
		if !s.cancelGuard.allow(src) {
			s.cancelGuard.miss(src)
			return
		}
		if !s.cancels.forward(pid, key) && s.cancelGuard.miss(src) {
			s.log.Warn("cancel requests with wrong keys: this source's cancel requests are ignored while it keeps sending them",
				zap.String("address", src), zap.Int("wrong_keys", cancelGuessBurst), zap.Int("per_second_after", cancelGuessRate))
		}
		return
	}
	for _, p := range cfg.Peers {
		if uint16(p.ID) == owner {
			if err := forwardCancel(p.Address, cfg.Server.ProxyProtocol != "off", from, pid, key); err != nil {
				s.log.Warn("could not forward a cancel request to its peer", zap.Int("peer_id", p.ID),
					zap.String("peer", p.Address), zap.Error(err))
			}
			return
		}
	}
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
	msg := make([]byte, 12, 16)
	binary.BigEndian.PutUint32(msg[0:], uint32(12+len(key)))
	binary.BigEndian.PutUint32(msg[4:], cancelRequestCode)
	binary.BigEndian.PutUint32(msg[8:], pid)
	msg = append(msg, key...)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	// The peer answers nothing and closes once it has passed the cancel
	// on; wait for that.
	var one [1]byte
	c.Read(one[:])
	return nil
}

package pgwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"

	"github.com/pires/go-proxyproto"
)

var (
	proxyV1Sig = []byte("PROXY")
	proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// maxProxyV1 is the longest PROXY v1 line (the protocol's limit).
const maxProxyV1 = 107

// readProxyHeader reads a PROXY v1 or v2 header from c without reading a
// byte past it (so the SSLRequest check still sees the socket as the client
// left it), and parses it with go-proxyproto. When the connection does not
// start with a header, it returns the bytes it looked at, to be read again
// as the start of the client's first packet.
func readProxyHeader(c net.Conn) (*proxyproto.Header, []byte, error) {
	head := make([]byte, 5)
	if _, err := io.ReadFull(c, head); err != nil {
		return nil, nil, err
	}
	var raw []byte
	switch {
	case bytes.Equal(head, proxyV1Sig):
		raw = head
		var b [1]byte
		for !bytes.HasSuffix(raw, []byte("\r\n")) {
			if len(raw) >= maxProxyV1 {
				return nil, nil, errors.New("PROXY v1 header too long")
			}
			if _, err := io.ReadFull(c, b[:]); err != nil {
				return nil, nil, err
			}
			raw = append(raw, b[0])
		}
	case bytes.Equal(head, proxyV2Sig[:5]):
		rest := make([]byte, 16-5)
		if _, err := io.ReadFull(c, rest); err != nil {
			return nil, nil, err
		}
		raw = append(head, rest...)
		if !bytes.Equal(raw[:12], proxyV2Sig) {
			return nil, nil, errors.New("bad PROXY v2 signature")
		}
		n := int(raw[14])<<8 | int(raw[15])
		body := make([]byte, n)
		if _, err := io.ReadFull(c, body); err != nil {
			return nil, nil, err
		}
		raw = append(raw, body...)
	default:
		return nil, head, nil
	}
	h, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(raw), len(raw)+16))
	if err != nil {
		return nil, nil, err
	}
	return h, nil, nil
}

// proxyClient is the client a PROXY header from the trusted proxy at
// proxy speaks for: the source address of an IPv4 or IPv6 connection; the
// proxy itself for a version 2 LOCAL header (the proxy's own health check);
// and for any other header (version 1's UNKNOWN, a client on one of the
// proxy's unix sockets) the zero Addr: the client is unknown, and only rules
// for every address match it. It used to be the proxy's address, so such
// clients got whatever rules grant the proxy's own address.
func proxyClient(h *proxyproto.Header, proxy netip.Addr) netip.Addr {
	if a, ok := h.SourceAddr.(*net.TCPAddr); ok && h.Command.IsProxy() {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	if h.Version == 2 && h.Command.IsLocal() {
		return proxy
	}
	return netip.Addr{}
}

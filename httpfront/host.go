package httpfront

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/internal/ascii"
)

// hostAllowed says whether a request's Host names this server, so that a
// page on a DNS-rebinding domain (whose name now resolves to a loopback
// pgwarden) reaches no handler: its Host is the attacker's name. Allowed
// are localhost, the host names and addresses of http_listen, any IP
// address when a listener is on the unspecified address (a browser sets an
// IP Host only when the user typed that IP), http.allowed_hosts, and no
// Host at all (HTTP/1.0 health checkers; a browser always sends one). The
// port is not compared: proxies and port mappings change it.
func hostAllowed(cfg *config.Config, host string) bool {
	if host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if ascii.EqualFold(host, "localhost") {
		return true
	}
	for _, a := range cfg.HTTP.AllowedHosts {
		if ascii.EqualFold(strings.TrimSuffix(a, "."), host) {
			return true
		}
	}
	ip, err := netip.ParseAddr(host)
	for _, l := range cfg.Server.HTTPListen {
		lh, _, err2 := net.SplitHostPort(l)
		if err2 != nil {
			continue
		}
		if ascii.EqualFold(lh, host) {
			return true
		}
		if err != nil {
			continue
		}
		la, err3 := netip.ParseAddr(lh)
		if lh == "" || (err3 == nil && la.IsUnspecified()) || (err3 == nil && la.Unmap() == ip.Unmap()) {
			return true
		}
	}
	// A loopback address is this machine whatever the listeners say.
	return err == nil && ip.IsLoopback()
}

// checkHost answers 421 Misdirected Request, before any handler runs, to a
// request whose Host is not this server's (see hostAllowed).
func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(s.o.State.Current().Config, r.Host) {
			writeError(w, http.StatusMisdirectedRequest, codeRejectedConnection,
				"the Host of this request is not a name of this server; add it to http.allowed_hosts if it is")
			return
		}
		next.ServeHTTP(w, r)
	})
}

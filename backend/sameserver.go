package backend

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/pgwarden/pgwarden/config"
)

// hostLookupTimeout bounds the lookups of one load (serve, reload, check).
const hostLookupTimeout = 2 * time.Second

// lookupFunc is net.Resolver.LookupNetIP's shape (tests give their own).
type lookupFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

// markDefaultServer sets DefaultServer on each [[databases]] entry whose
// host is written unlike the default [backend] host (same port) but names
// the same server: the two share an address once looked up, or both reach
// this machine (a loopback address or one of its own interfaces). An
// unlisted client database name goes to the default server, and one that
// is such an entry's backend database would reach the entry's database past
// the rules written for the entry's name (routedTo refuses it).
//
// The lookup happens here, once per load, and not per session: a name that
// moves to another address later is seen at the next reload. A name that
// does not resolve counts as the same server, as sameHost errs: the worst
// that does is refuse a client name the operator can list.
func markDefaultServer(cfg *config.Config, lookup lookupFunc, local func() []netip.Addr) {
	ctx, cancel := context.WithTimeout(context.Background(), hostLookupTimeout)
	defer cancel()
	var mine map[netip.Addr]bool
	resolved := map[string][]string{}
	// keys are the sameHost forms of a host's addresses; nil when it has
	// none that could be told apart (it did not resolve).
	keys := func(host string) []string {
		if k, ok := resolved[host]; ok {
			return k
		}
		var out []string
		addAddr := func(ip netip.Addr) {
			ip = ip.Unmap().WithZone("")
			if mine == nil {
				mine = map[netip.Addr]bool{}
				for _, a := range local() {
					mine[a.Unmap().WithZone("")] = true
				}
			}
			if mine[ip] {
				out = append(out, "local")
				return
			}
			out = append(out, hostKey(ip.String()))
		}
		k := hostKey(host)
		if ip, err := netip.ParseAddr(k); err == nil {
			addAddr(ip)
		} else if k == "local" {
			out = []string{"local"}
		} else if ips, err := lookup(ctx, "ip", host); err == nil {
			for _, ip := range ips {
				addAddr(ip)
			}
		}
		resolved[host] = out
		return out
	}
	for i := range cfg.Databases {
		d := &cfg.Databases[i]
		d.DefaultServer = false
		e := entryTarget(cfg, *d)
		if e.Port != cfg.Backend.Port || sameHost(e.Host, cfg.Backend.Host) {
			continue // another server for certain, or one routedTo sees anyway
		}
		a, b := keys(e.Host), keys(cfg.Backend.Host)
		d.DefaultServer = len(a) == 0 || len(b) == 0 || shareOne(a, b)
	}
}

func shareOne(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// localAddrs are this machine's own interface addresses: a PostgreSQL
// listening on all of them is reached by any of them.
func localAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out
}

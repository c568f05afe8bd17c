package backend

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pgwarden/pgwarden/config"
)

const (
	// hostLookupTimeout bounds one lookup of a backend host's name.
	hostLookupTimeout = 2 * time.Second
	// hostRefreshAfter is the age after which a load refreshes a name's
	// addresses, in the background: the load itself uses what it has.
	hostRefreshAfter = 30 * time.Second
)

// lookupFunc is net.Resolver.LookupNetIP's shape (tests give their own).
type lookupFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

// hostResolver keeps the sameHost forms of backend host names' addresses
// across loads. A reload (a users-file change, a revoked password) must
// not wait for DNS: a name looked up before is answered from here at once,
// and looked up again in the background when older than hostRefreshAfter,
// so a name that moved is seen by a later load. Only a name never looked
// up before is looked up during the load, within hostLookupTimeout.
type hostResolver struct {
	lookup lookupFunc
	local  func() []netip.Addr

	mu      sync.Mutex
	entries map[string]*resolvedHost
}

type resolvedHost struct {
	keys       []string // nil: the name did not resolve
	at         time.Time
	refreshing bool
}

var defaultResolver = &hostResolver{lookup: net.DefaultResolver.LookupNetIP, local: localAddrs}

// keys are the sameHost forms of host's addresses ("local" for this
// machine's), nil when it has none to compare (it did not resolve).
func (r *hostResolver) keys(host string) []string {
	k := config.HostKey(host)
	if k == "local" {
		return []string{"local"}
	}
	if ip, err := netip.ParseAddr(k); err == nil {
		return []string{r.addrKey(ip, r.localSet())}
	}
	r.mu.Lock()
	e := r.entries[host]
	if e != nil && !e.refreshing && time.Since(e.at) > hostRefreshAfter {
		e.refreshing = true
		go r.store(host) // ends within hostLookupTimeout
	}
	r.mu.Unlock()
	if e != nil {
		return e.keys
	}
	return r.store(host)
}

// store looks host up and keeps what it found.
func (r *hostResolver) store(host string) []string {
	keys := r.resolve(host)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.entries == nil {
		r.entries = map[string]*resolvedHost{}
	}
	r.entries[host] = &resolvedHost{keys: keys, at: time.Now()}
	return keys
}

func (r *hostResolver) resolve(host string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), hostLookupTimeout)
	defer cancel()
	ips, err := r.lookup(ctx, "ip", host)
	if err != nil {
		return nil
	}
	mine := r.localSet()
	var out []string
	for _, ip := range ips {
		out = append(out, r.addrKey(ip, mine))
	}
	return out
}

func (r *hostResolver) localSet() map[netip.Addr]bool {
	mine := map[netip.Addr]bool{}
	for _, a := range r.local() {
		mine[a.Unmap().WithZone("")] = true
	}
	return mine
}

func (r *hostResolver) addrKey(ip netip.Addr, mine map[netip.Addr]bool) string {
	ip = ip.Unmap().WithZone("")
	if mine[ip] {
		return "local"
	}
	return config.HostKey(ip.String())
}

// markDefaultServer sets DefaultServer on each [[databases]] entry whose
// host is written unlike the default [backend] host (same port) but names
// the same server: the two share an address, or both reach this machine
// (a loopback address or one of its own interfaces). An unlisted client
// database name goes to the default server, and one that is such an
// entry's backend database would reach the entry's database past the rules
// written for the entry's name (routedTo refuses it).
//
// Names are looked up when the configuration loads (see hostResolver), not
// per session. A name that does not resolve counts as the same server, as
// sameHost errs: the worst that does is refuse a client name the operator
// can list.
func markDefaultServer(cfg *config.Config, r *hostResolver) {
	var def []string // the default host's keys, looked up at the first need
	for i := range cfg.Databases {
		d := &cfg.Databases[i]
		e := entryTarget(cfg, *d)
		same := false
		if e.Port == cfg.Backend.Port && !sameHost(e.Host, cfg.Backend.Host) {
			// Otherwise another server for certain, or one routedTo sees
			// anyway.
			if def == nil {
				def = r.keys(cfg.Backend.Host)
			}
			a := r.keys(e.Host)
			same = len(a) == 0 || len(def) == 0 || shareOne(a, def)
		}
		d.DefaultServer = same
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

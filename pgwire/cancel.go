package pgwire

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"sync"
	"time"

	"github.com/pgwarden/pgwarden/backend"
)

// cancelTarget is where a client's CancelRequest must go: the backend it is
// relayed to, and that backend's own key.
type cancelTarget struct {
	key     [4]byte // the secret key pgwarden gave the client
	network string
	addr    string
	pid     uint32 // the backend's pid, which is also what the client was given
	secret  []byte // the backend's own secret key, never shown to the client

	// inflight counts cancels being delivered; unregister waits for them,
	// so that none lands on the backend's next client.
	inflight sync.WaitGroup
}

// cancelRegistry maps the BackendKeyData pgwarden handed to clients to
// their backends. A client is given its backend's real process id, so that
// pg_terminate_backend, NOTIFY sender pids and pg_stat_activity mean what
// they mean directly, with a secret key of pgwarden's own from crypto/rand:
// the backend's key never leaves pgwarden, and a guessable key would let
// anyone cancel anyone's queries. Backends behind different [[databases]]
// hosts may share a pid, so a pid can hold several targets; the key tells
// them apart.
//
// With peers (server.peer_id), the top 10 bits of every key carry this
// instance's id, as PgBouncer's peering does, so that a CancelRequest that
// a load balancer sends to another instance can be forwarded here; the
// other 22 bits stay random.
type cancelRegistry struct {
	mu     sync.Mutex
	m      map[uint32][]*cancelTarget
	peerID uint16
}

func newCancelRegistry(peerID int) *cancelRegistry {
	return &cancelRegistry{m: make(map[uint32][]*cancelTarget), peerID: uint16(peerID)}
}

// keyPeer is the peer id a cancel key carries (0 when peering is off).
func keyPeer(key []byte) uint16 {
	if len(key) != 4 {
		return 0
	}
	return uint16(key[0])<<2 | uint16(key[1]>>6)
}

// stampPeer writes id into the top 10 bits of key.
func stampPeer(key *[4]byte, id uint16) {
	key[0] = byte(id >> 2)
	key[1] = key[1]&0x3F | byte(id&3)<<6
}

// register gives t a fresh random key, unique among the targets of its pid,
// and stores it.
func (r *cancelRegistry) register(t *cancelTarget) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.m[t.pid]
	for {
		rand.Read(t.key[:])
		if r.peerID != 0 {
			stampPeer(&t.key, r.peerID)
		}
		taken := false
		for _, o := range list {
			taken = taken || o.key == t.key
		}
		if !taken {
			break
		}
	}
	r.m[t.pid] = append(list, t)
}

// unregister retires t's key: after it returns, no CancelRequest reaches
// t's backend through t, and none is still on its way. It must run before
// the backend serves anyone else, or the old client could cancel the new
// one's queries.
func (r *cancelRegistry) unregister(t *cancelTarget) {
	defer t.inflight.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.m[t.pid]
	for i, o := range list {
		if o == t {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(r.m, t.pid)
	} else {
		r.m[t.pid] = list
	}
}

// lookup finds the target of a CancelRequest; nil for an unknown pid or a
// wrong key. Every candidate's key is compared in constant time. A target
// found is counted in flight; the caller ends that with inflight.Done.
func (r *cancelRegistry) lookup(pid uint32, key []byte) *cancelTarget {
	r.mu.Lock()
	defer r.mu.Unlock()
	var found *cancelTarget
	for _, t := range r.m[pid] {
		if len(key) == len(t.key) && subtle.ConstantTimeCompare(key, t.key[:]) == 1 {
			found = t
		}
	}
	if found != nil {
		found.inflight.Add(1)
	}
	return found
}

// forward sends a matching CancelRequest to the client's backend, and
// reports whether the key was right (whether or not the backend could be
// reached). Unknown process ids and wrong keys are ignored silently, as
// PostgreSQL does.
func (r *cancelRegistry) forward(pid uint32, key []byte) bool {
	t := r.lookup(pid, key)
	if t == nil {
		return false
	}
	defer t.inflight.Done()
	// Returns once PostgreSQL closed, so the cancel has been handed over
	// before the client's own connection goes.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	backend.SendCancel(ctx, t.network, t.addr, t.pid, t.secret)
	return true
}

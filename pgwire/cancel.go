package pgwire

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"net"
	"sync"
	"time"
)

// cancelTarget is where a client's CancelRequest must go: the backend it is
// relayed to, and that backend's own key.
type cancelTarget struct {
	key     [4]byte // the key pgwarden gave the client
	network string
	addr    string
	pid     uint32
	secret  []byte
}

// cancelRegistry maps the BackendKeyData pgwarden handed to clients to
// their backends. Keys come from crypto/rand: a guessable key would let
// anyone cancel anyone's queries.
type cancelRegistry struct {
	mu sync.Mutex
	m  map[uint32]*cancelTarget
}

func newCancelRegistry() *cancelRegistry {
	return &cancelRegistry{m: make(map[uint32]*cancelTarget)}
}

// register stores t under a fresh random process id and key.
func (r *cancelRegistry) register(t *cancelTarget) uint32 {
	rand.Read(t.key[:])
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var b [4]byte
		rand.Read(b[:])
		// Positive and non-zero, like a real process id.
		pid := binary.BigEndian.Uint32(b[:]) & 0x7fffffff
		if _, taken := r.m[pid]; pid != 0 && !taken {
			r.m[pid] = t
			return pid
		}
	}
}

func (r *cancelRegistry) unregister(pid uint32) {
	r.mu.Lock()
	delete(r.m, pid)
	r.mu.Unlock()
}

// forward sends a matching CancelRequest to the client's backend. Unknown
// process ids and wrong keys are ignored silently, as PostgreSQL does, and
// take the same path up to the key comparison.
func (r *cancelRegistry) forward(pid uint32, key []byte) bool {
	r.mu.Lock()
	t := r.m[pid]
	r.mu.Unlock()
	if t == nil {
		return false
	}
	if len(key) != len(t.key) || subtle.ConstantTimeCompare(key, t.key[:]) != 1 {
		return false
	}
	c, err := net.DialTimeout(t.network, t.addr, 5*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := make([]byte, 12, 12+len(t.secret))
	binary.BigEndian.PutUint32(msg[0:], uint32(12+len(t.secret)))
	binary.BigEndian.PutUint32(msg[4:], cancelRequestCode)
	binary.BigEndian.PutUint32(msg[8:], t.pid)
	msg = append(msg, t.secret...)
	if _, err := c.Write(msg); err != nil {
		return false
	}
	// PostgreSQL answers nothing and closes; wait for that so the cancel
	// has been handed over before the client's own connection goes.
	var one [1]byte
	c.Read(one[:])
	return true
}

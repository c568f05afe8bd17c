package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ThrottleEvent is one instance's throttle failure or success, shared with
// the other instances on ThrottleChannel.
type ThrottleEvent struct {
	Failure bool   `json:"f"`
	Address string `json:"a"`
	User    string `json:"u"`
}

// sealedEvent is what a ThrottleEvent travels as, inside the seal: who
// sent it, its place in that sender's sequence and when, so that a copy
// sent again later is told apart from the original.
type sealedEvent struct {
	ThrottleEvent
	Instance string `json:"i"`
	Seq      uint64 `json:"n"`
	Time     int64  `json:"t"` // Unix milliseconds at the sender
}

// ThrottleEventMaxAge is how far an event's time may be from the
// receiver's clock (either way, for clocks a little apart) before it is
// refused as stale.
const ThrottleEventMaxAge = time.Minute

// Errors of ThrottleSeal.Open.
var (
	// ErrThrottleEventForged: the payload is not sealed with the store's
	// key (someone else NOTIFYs the channel, or an instance of a version
	// before the seal).
	ErrThrottleEventForged = errors.New("not sealed with the store's throttle key")
	// ErrThrottleEventReplayed: a sealed event seen before, or too old.
	ErrThrottleEventReplayed = errors.New("sealed by an instance, but seen before or too old")
)

// ThrottleSeal seals the throttle events an instance sends and opens
// those it receives. Any role that can connect to the store's database can
// LISTEN and NOTIFY on its channels. A signature alone stops forged
// events, but a role that kept a real one could send it again at will: a
// failure holds the user up once more, and a success wipes the backoff of
// its (address, user) on every instance, so a guesser who shares the
// user's address (a NAT, the unix socket) would guess unthrottled. So each
// event is encrypted and authenticated (AES-256-GCM under a key derived
// from the store's throttle key; listeners learn no user names or
// addresses either), carries its sender's sequence number and time, and is
// taken at most once: only a number above the last one taken from that
// sender, and only within ThrottleEventMaxAge of the receiver's clock
// (which also bounds what a receiver must remember of senders).
type ThrottleSeal struct {
	aead cipher.AEAD
	self string
	seq  atomic.Uint64
	now  func() time.Time

	mu    sync.Mutex
	last  map[string]senderState // by sender instance
	swept time.Time
}

type senderState struct {
	seq  uint64
	seen time.Time
}

// throttleSealContext binds the derived key and each seal to their use.
const throttleSealContext = "pgwarden throttle events v2\x00"

// NewThrottleSeal seals under the store's shared throttle key; self names
// this instance (random per process).
func NewThrottleSeal(key, self string) *ThrottleSeal {
	k := sha256.Sum256([]byte(throttleSealContext + key))
	block, err := aes.NewCipher(k[:])
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return &ThrottleSeal{aead: aead, self: self, now: time.Now, last: make(map[string]senderState)}
}

// Seal is the NOTIFY payload for ev: the next number of this instance's
// sequence, its time, all sealed.
func (s *ThrottleSeal) Seal(ev ThrottleEvent) string {
	plain, _ := json.Marshal(sealedEvent{ThrottleEvent: ev, Instance: s.self, Seq: s.seq.Add(1), Time: s.now().UnixMilli()})
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawStdEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(throttleSealContext)))
}

// Open takes in a payload received on ThrottleChannel. mine reports an
// event this instance sent itself (to be ignored); err is
// ErrThrottleEventForged or ErrThrottleEventReplayed for one that must
// not count.
func (s *ThrottleSeal) Open(payload string) (ev ThrottleEvent, mine bool, err error) {
	raw, err := base64.RawStdEncoding.DecodeString(payload)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return ev, false, ErrThrottleEventForged
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(throttleSealContext))
	if err != nil {
		return ev, false, ErrThrottleEventForged
	}
	var se sealedEvent
	if json.Unmarshal(plain, &se) != nil || se.Instance == "" {
		return ev, false, ErrThrottleEventForged
	}
	if se.Instance == s.self {
		return se.ThrottleEvent, true, nil
	}
	now := s.now()
	if age := now.Sub(time.UnixMilli(se.Time)); age > ThrottleEventMaxAge || age < -ThrottleEventMaxAge {
		return ev, false, ErrThrottleEventReplayed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	if st, ok := s.last[se.Instance]; ok && se.Seq <= st.seq {
		return ev, false, ErrThrottleEventReplayed
	}
	s.last[se.Instance] = senderState{seq: se.Seq, seen: now}
	return se.ThrottleEvent, false, nil
}

// sweep forgets senders not heard from for twice the maximum age: any
// event of theirs sent before is refused as too old by now. Called with
// s.mu held.
func (s *ThrottleSeal) sweep(now time.Time) {
	if now.Sub(s.swept) < ThrottleEventMaxAge {
		return
	}
	s.swept = now
	for id, st := range s.last {
		if now.Sub(st.seen) > 2*ThrottleEventMaxAge {
			delete(s.last, id)
		}
	}
}

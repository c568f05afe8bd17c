package authcore

import (
	"crypto/sha256"
	"sync/atomic"
)

// mockKey decides what an unknown name is shown: the salt of its mock
// SCRAM exchange and the decoy hash it is checked against (with its
// iteration count). A real user shows the same salt and count on every
// attempt, from every instance, before and after any reload or restart;
// an unknown name must too, or comparing two answers tells which names
// exist. A key drawn per reload made a name's salt change at each reload
// (and a NOTIFY on the store's channel, open to any role of its database,
// makes one); PostgreSQL keeps its mock nonce in pg_control for the same
// reason. So the key is process-wide, and instances share one when they
// can: users.mock_auth_secret, else the PostgreSQL store's.
var mockKey atomic.Pointer[[sha256.Size]byte]

func init() {
	var k [sha256.Size]byte
	copy(k[:], randomBytes(sha256.Size))
	mockKey.Store(&k)
}

// SetMockSecret makes secret, which instances behind one address share,
// the key of what unknown names are shown; "" keeps the key in force.
func SetMockSecret(secret string) {
	if secret == "" {
		return
	}
	k := sha256.Sum256([]byte("pgwarden mock authentication\x00" + secret))
	mockKey.Store(&k)
}

func mockKeyBytes() []byte { return mockKey.Load()[:] }

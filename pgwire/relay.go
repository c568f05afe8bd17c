package pgwire

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

var noDeadline time.Time

// relay copies both directions until either side closes; the first to end
// closes both. Copies are plain io.Copy between the sockets, so that on Linux
// TCP to TCP goes through splice. The client's buffered reader is drained
// first: bytes the client pipelined during authentication reach the backend.
// This is the relay when backend reuse is off.
func relay(client *clientConn, backend net.Conn) (up, down int64) {
	done := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(client.Conn, backend)
		client.Close()
		backend.Close()
		done <- n
	}()
	up, _ = io.Copy(backend, client.r)
	backend.Close()
	client.Close()
	down = <-done
	return up, down
}

// relayBufPool holds the copy buffers of tracked relays; a buffer is held
// only while a direction is copying.
var relayBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// trackedRelay relays like relay, but follows message boundaries so that
// when the client leaves with its backend idle, the backend can be kept:
// client to backend it counts sync points (Query, Sync, FunctionCall) and
// holds back the client's Terminate; backend to client it counts
// ReadyForQuery, remembers the last transaction status and the
// ParameterStatus values.
type trackedRelay struct {
	client  *clientConn
	backend net.Conn
	params  map[string]string // updated by the backend-to-client side only

	syncs    atomic.Int64 // sync points the client sent
	readies  atomic.Int64 // ReadyForQuery the backend sent
	status   atomic.Int32 // last transaction status: 'I', 'T', 'E'
	unsynced bool         // client sent messages after its last sync point
	up, down int64
}

// run relays until the client leaves or either side fails. It reports
// whether the backend is left idle, outside a transaction, at a message
// boundary, with nothing outstanding: safe to reset and reuse. When it is
// not, both connections are closed.
func (t *trackedRelay) run() (reusable bool) {
	t.status.Store('I')
	downDone := make(chan bool, 1) // true: stopped cleanly at a boundary
	var stopping atomic.Bool
	go func() {
		bp := relayBufPool.Get().(*[]byte)
		defer relayBufPool.Put(bp)
		buf := *bp
		sc := &msgScanner{capture: func(typ byte) bool { return typ == 'Z' || typ == 'S' },
			onMsg: func(typ byte, body []byte) {
				switch typ {
				case 'Z':
					if len(body) == 1 {
						t.status.Store(int32(body[0]))
					}
					t.readies.Add(1)
				case 'S':
					if name, rest, ok := cutNul(body); ok {
						if value, _, ok := cutNul(rest); ok {
							t.params[name] = value
						}
					}
				}
			}}
		clientGone := false
		for {
			n, err := t.backend.Read(buf)
			if n > 0 {
				sc.feed(buf[:n], 0)
				if !clientGone {
					if _, werr := t.client.Write(buf[:n]); werr != nil {
						clientGone = true // keep draining to a boundary
					}
					t.down += int64(n)
				}
			}
			if err != nil {
				downDone <- stopping.Load() && errors.Is(err, os.ErrDeadlineExceeded) && sc.atBoundary()
				return
			}
		}
	}()

	terminated := t.clientToBackend()
	if terminated && !t.unsynced {
		// The client said goodbye. Give the backend a moment to finish
		// answering what the client last asked (normally already done).
		deadline := time.Now().Add(2 * time.Second)
		for t.readies.Load() < t.syncs.Load() && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
		if t.readies.Load() == t.syncs.Load() && t.status.Load() == 'I' {
			stopping.Store(true)
			t.backend.SetReadDeadline(time.Now())
			clean := <-downDone
			t.backend.SetReadDeadline(noDeadline)
			t.client.Close()
			if clean && t.readies.Load() == t.syncs.Load() && t.status.Load() == 'I' {
				return true
			}
			t.backend.Close()
			return false
		}
	}
	t.client.Close()
	t.backend.Close()
	<-downDone
	return false
}

// clientToBackend copies until the client ends; true when it ended with a
// Terminate message at a message boundary (held back from the backend).
func (t *trackedRelay) clientToBackend() bool {
	bp := relayBufPool.Get().(*[]byte)
	defer relayBufPool.Put(bp)
	buf := *bp
	sc := &msgScanner{onMsg: func(typ byte, _ []byte) {
		switch typ {
		case 'Q', 'S', 'F':
			t.syncs.Add(1)
			t.unsynced = false
		case 'd', 'c', 'f', 'H':
			// COPY data and its end belong to the Query that started it;
			// Flush asks for nothing new.
		default:
			// Parse, Bind, Describe, Execute, Close: extended-protocol work
			// whose Sync has not come yet.
			t.unsynced = true
		}
	}}
	for {
		n, err := t.client.r.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			cut := sc.feed(chunk, 'X')
			if cut >= 0 {
				chunk = chunk[:cut]
			}
			if len(chunk) > 0 {
				if _, werr := t.backend.Write(chunk); werr != nil {
					return false
				}
				t.up += int64(len(chunk))
			}
			if cut >= 0 {
				// Anything after Terminate is ignored, as PostgreSQL does.
				return sc.atBoundary()
			}
		}
		if err != nil {
			return false
		}
	}
}

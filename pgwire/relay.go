package pgwire

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/internal/sockpeek"
	"github.com/pgwarden/pgwarden/metrics"
)

var noDeadline time.Time

// terminationMessage is what PostgreSQL sends a session an administrator
// ends: pgwarden sends it to every session a shutdown ends.
var terminationMessage = func() []byte {
	b, _ := errorResponse(&Error{Code: codeAdminShutdown, Message: "terminating connection due to administrator command"}).Encode(nil)
	return b
}()

// relay copies both directions until either side closes; the first to end
// closes the client and stops reading the backend, which the caller then
// closes, or abandons when it still owes answers (the answers returned;
// see backend.Pool.Abandon). The client's buffered reader is drained
// first: bytes the client pipelined during authentication reach the
// backend. This is the relay when backend reuse is off. Each read is
// counted in the metrics as it is passed on, and its message headers
// followed (which costs the splice a TCP-to-TCP io.Copy could use).
func relay(client *clientConn, backend net.Conn, terminating *atomic.Bool, m *metrics.Metrics) *owedAnswers {
	var syncs, readies int64
	copyIn := false
	up := &msgScanner{onMsg: func(typ byte, _ []byte) {
		switch typ {
		case 'Q', 'S', 'F':
			syncs++
		}
	}}
	down := &msgScanner{onMsg: func(typ byte, _ []byte) {
		switch typ {
		case 'Z':
			readies++
			copyIn = false
		case 'G', 'W':
			copyIn = true
		}
	}}
	done := make(chan struct{})
	go func() {
		// Through client's Write: TLS records stay within maxTLSRecord.
		io.Copy(client, scanningReader{backend, down, m.RelayedDown})
		if terminating != nil && terminating.Load() {
			// The server ends the session (shutdown): the client is told
			// so, as PostgreSQL tells it. This relay follows no message
			// boundaries; at a shutdown that is a risk worth taking.
			client.Write(terminationMessage)
		}
		client.Close() // ends the other direction's read
		close(done)
	}()
	io.Copy(backend, scanningReader{client.r, up, m.RelayedUp})
	client.Close()
	backend.SetReadDeadline(time.Now()) // ends this direction's read
	<-done
	return answersOwed(down, syncs, readies, copyIn)
}

// scanningReader reports each read's size as it happens and follows its
// messages.
type scanningReader struct {
	r     io.Reader
	sc    *msgScanner
	count func(int)
}

func (c scanningReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.count(n)
		c.sc.feed(p[:n], 0)
	}
	return n, err
}

// relayBufPool holds the large copy buffers of tracked relays.
var relayBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// quietBufSize is the buffer a relay direction reads into while its stream
// is quiet (messages smaller than this).
const quietBufSize = 1 << 10

// quietBufPool holds those buffers for directions that take one only while
// bytes are in flight (see pumpSocket, readTLSRecords).
var quietBufPool = sync.Pool{New: func() any { b := make([]byte, quietBufSize); return &b }}

// pump reads r and hands each chunk to each until each returns false or
// reading fails. It reads into a small buffer and switches to a pooled
// large one while data flows in full reads, returning it when the stream
// goes quiet again. Where r is a socket (not TLS), the buffer comes from a
// pool only while bytes are in flight: a direction parked waiting for its
// peer holds none. each must not keep the chunk.
func pump(r io.Reader, each func([]byte) bool) error {
	if sc, ok := r.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return pumpSocket(rc, each)
		}
	}
	small := make([]byte, quietBufSize)
	buf := small
	var big *[]byte
	defer func() {
		if big != nil {
			relayBufPool.Put(big)
		}
	}()
	for {
		n, err := r.Read(buf)
		if n > 0 && !each(buf[:n]) {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case n == len(buf) && big == nil:
			big = relayBufPool.Get().(*[]byte)
			buf = *big
		case n < len(small) && big != nil:
			relayBufPool.Put(big)
			big, buf = nil, small
		}
	}
}

// pumpSocket is pump over a socket's descriptor. The read is made inside
// RawConn.Read's callback, so the poller parks the goroutine only after a
// read found nothing (EAGAIN), and the buffer goes back to its pool before
// it parks. (Waiting for readability first and reading after would lose a
// wake-up: RawConn.Read forgets a readiness the poller saw before the call,
// so bytes that arrived between two reads would wait for the next ones.)
func pumpSocket(rc syscall.RawConn, each func([]byte) bool) error {
	var small, big *[]byte
	release := func() {
		if small != nil {
			quietBufPool.Put(small)
			small = nil
		}
		if big != nil {
			relayBufPool.Put(big)
			big = nil
		}
	}
	defer release()
	for {
		var n int
		var rerr error
		var buf []byte
		err := rc.Read(func(fd uintptr) bool {
			switch {
			case big != nil:
				buf = *big
			default:
				if small == nil {
					small = quietBufPool.Get().(*[]byte)
				}
				buf = *small
			}
			for {
				n, rerr = unix.Read(int(fd), buf)
				if rerr != unix.EINTR {
					break
				}
			}
			if rerr == unix.EAGAIN {
				release() // quiet: park holding no buffer
				return false
			}
			return true
		})
		if err != nil {
			return err
		}
		if rerr != nil {
			return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", rerr)}
		}
		if n <= 0 {
			return io.EOF
		}
		if !each(buf[:n]) {
			return nil
		}
		switch {
		case n == len(buf) && big == nil:
			big = relayBufPool.Get().(*[]byte)
		case n < quietBufSize && big != nil:
			relayBufPool.Put(big)
			big = nil
		}
	}
}

// pumpTLS is pump over a TLS connection whose transport is a socket. A
// direction parked waiting for its peer holds no buffer and a shallow
// stack: it waits until the socket is readable (looking inside
// RawConn.Read's callback, so that no readiness is lost, see pumpSocket),
// and only then reads records (see readTLSRecords).
func pumpTLS(tc *tls.Conn, rc syscall.RawConn, each func([]byte) bool, heldTaken bool) error {
	// First what TLS already holds, unless heldTLS took it: records that
	// came with the login's last ones (a client that pipelined past
	// authentication) were read from the socket then, and the socket will
	// not tell of them again.
	for waited := heldTaken; ; waited = true {
		if waited {
			looked := false
			err := rc.Read(func(fd uintptr) bool {
				if looked {
					return true // readable, or woken for a deadline or close: the TLS read tells
				}
				looked = true
				return sockpeek.FD(fd) != socketQuiet
			})
			if err != nil {
				return err
			}
		}
		more, err := readTLSRecords(tc, each, waited)
		if !more || err != nil {
			return err
		}
	}
}

// pumpClient is pump over the client's connection: over TLS on a socket,
// pumpTLS. Only there: pumpTLS sets and clears the read deadline, which
// nothing else sets on a client's connection while it relays (a backend's
// is set to stop its relay). heldTaken says that heldTLS already took what
// TLS held when the relay began.
func pumpClient(c net.Conn, each func([]byte) bool, heldTaken bool) error {
	if tc, ok := c.(*tls.Conn); ok {
		if rc, ok := rawSocket(tc); ok {
			return pumpTLS(tc, rc, each, heldTaken)
		}
	}
	return pump(c, each)
}

// heldTLS takes what a TLS client's connection already holds (records the
// login read from the socket along with its own), reading nothing from
// the socket; nil for a connection pumpClient does not read with pumpTLS.
// The login's goroutine calls it before the hand-off: those reads go deep
// into crypto/tls, and on the relay's fresh goroutine they would grow its
// stack for the life of the session, idle or not.
func heldTLS(c net.Conn) ([]byte, error) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil, nil
	}
	if _, ok := rawSocket(tc); !ok {
		return nil, nil
	}
	var held []byte
	_, err := readTLSRecords(tc, func(b []byte) bool { held = append(held, b...); return true }, false)
	return held, err
}

// pastDeadline makes a read return at once unless its bytes are buffered.
var pastDeadline = time.Unix(1, 0)

// readTLSRecords reads the socket's arrived bytes through tc (waiting only
// for the rest of a record already begun; with arrived false, it skips
// that), then every record TLS already holds, handing each chunk to each.
// Those are read with a deadline in the past, so that the read never
// touches the socket: TLS keeps that timeout temporary, and a partial record
// for the next read. more is false when each asked to stop. It reads into a
// small pooled buffer, and a large one once a read fills it: a client that
// stalls inside a record holds 1 KiB, not 32.
func readTLSRecords(tc *tls.Conn, each func([]byte) bool, arrived bool) (more bool, err error) {
	small := quietBufPool.Get().(*[]byte)
	var big *[]byte
	held := !arrived // reading only what TLS holds
	if held {
		tc.SetReadDeadline(pastDeadline)
	}
	defer func() {
		if held {
			tc.SetReadDeadline(noDeadline)
		}
		quietBufPool.Put(small)
		if big != nil {
			relayBufPool.Put(big)
		}
	}()
	buf := *small
	for {
		n, err := tc.Read(buf)
		if held && n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			return true, nil // nothing left inside TLS: wait on the socket
		}
		if n > 0 && !each(buf[:n]) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if n == len(buf) && big == nil {
			big = relayBufPool.Get().(*[]byte)
			buf = *big
		}
		if !held {
			held = true
			tc.SetReadDeadline(pastDeadline)
		}
	}
}

// trackedRelay relays like relay, but follows message boundaries so that
// when the client leaves with its backend idle, the backend can be kept:
// client to backend it counts sync points (Query, Sync, FunctionCall) and
// holds back the client's Terminate; backend to client it counts
// ReadyForQuery, remembers the last transaction status and the
// ParameterStatus values.
type trackedRelay struct {
	client  *clientConn
	backend net.Conn
	session *backend.Session // its Params, updated by the backend-to-client side only

	syncs    atomic.Int64 // sync points the client sent
	readies  atomic.Int64 // ReadyForQuery the backend sent
	status   atomic.Int32 // last transaction status: 'I', 'T', 'E'
	unsynced bool         // client sent messages after its last sync point
	up, down int64
	metrics  *metrics.Metrics // counts the bytes as they flow
	// held is what heldTLS took from a TLS client before the relay began
	// (heldTaken), and the error that ended its reads.
	held      []byte
	heldErr   error
	heldTaken bool
	// terminating is set when the server ends the session (shutdown): the
	// backend is closed, and the client is told 57P01 at a message
	// boundary before its socket closes.
	terminating *atomic.Bool
	// keptState: the client may have left state no reset removes (see
	// keptStateDetector).
	keptState bool
	// onDatabaseDDL gets the databases a client's DROP, ALTER or CREATE
	// DATABASE names (see sqlWatch); nil: not watched.
	onDatabaseDDL func(names []string)
	// copyIn: the backend's last word was CopyInResponse or
	// CopyBothResponse (it waits for the client's data).
	copyIn atomic.Bool
	// owe is what the backend still owes when run returns false (nil:
	// nothing; see answersOwed).
	owe *owedAnswers
}

// run relays until the client leaves or either side fails. It reports
// whether the backend is left idle, outside a transaction, at a message
// boundary, with nothing outstanding: safe to reset and reuse. When it is
// not, the client is closed and the backend no longer read, for the
// caller to discard.
func (t *trackedRelay) run() (reusable bool) {
	t.status.Store('I')
	downDone := make(chan bool, 1) // true: stopped cleanly at a boundary
	var stopping atomic.Bool
	// The backend's stream, followed by the goroutine below until it ends.
	sc := &msgScanner{capture: func(typ byte) bool { return typ == 'Z' || typ == 'S' },
		onMsg: func(typ byte, body []byte) {
			switch typ {
			case 'Z':
				if len(body) == 1 {
					t.status.Store(int32(body[0]))
				}
				t.readies.Add(1)
				t.copyIn.Store(false)
			case 'S':
				if name, value, ok := parseParameterStatus(body); ok {
					t.session.SetParam(name, value)
				}
			case 'G', 'W':
				t.copyIn.Store(true)
			}
		}}
	go func() {
		clientGone := false
		err := pump(t.backend, func(chunk []byte) bool {
			sc.feed(chunk, 0)
			if !clientGone {
				if _, werr := t.client.Write(chunk); werr != nil {
					clientGone = true // keep draining to a boundary
				}
				t.down += int64(len(chunk))
				t.metrics.RelayedDown(len(chunk))
			}
			return true
		})
		stopped := stopping.Load()
		if t.terminating != nil && t.terminating.Load() {
			if !clientGone && sc.atBoundary() {
				t.client.Write(terminationMessage)
			}
			t.client.Close() // ends clientToBackend's read
		} else if !stopped {
			// The backend ended (its FATAL, if any, is passed on): the
			// client is closed as PostgreSQL's own close would close it,
			// not left open until it next writes. That also ends
			// clientToBackend's read.
			t.client.Close()
		}
		downDone <- stopped && errors.Is(err, os.ErrDeadlineExceeded) && sc.atBoundary()
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
			return clean && t.readies.Load() == t.syncs.Load() && t.status.Load() == 'I'
		}
	}
	// The backend is not closed here: the caller closes it, or abandons it
	// while it still owes answers (backend.Pool.Abandon).
	t.client.Close()
	t.backend.SetReadDeadline(time.Now())
	<-downDone
	t.owe = answersOwed(sc, t.syncs.Load(), t.readies.Load(), t.copyIn.Load())
	return false
}

// clientToBackend copies until the client ends; true when it ended with a
// Terminate message at a message boundary (held back from the backend).
func (t *trackedRelay) clientToBackend() bool {
	watch := sqlWatch{onDDL: t.onDatabaseDDL}
	defer func() { t.keptState = watch.kept.found }()
	sc := &msgScanner{
		stream:  watch.wants,
		onStart: watch.start,
		onPart:  watch.feed,
	}
	sc.onMsg = func(typ byte, _ []byte) {
		if sc.streams {
			watch.end()
		}
		switch typ {
		case 'Q', 'S':
			t.syncs.Add(1)
			t.unsynced = false
		case 'F':
			// A fast-path call names its function by oid: it may be
			// set_config or dblink_connect.
			watch.kept.found = true
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
	}
	terminated, failed := false, false
	forward := func(chunk []byte) bool {
		cut := sc.feed(chunk, 'X')
		if cut >= 0 {
			chunk = chunk[:cut]
		}
		if len(chunk) > 0 {
			if _, err := t.backend.Write(chunk); err != nil {
				failed = true
				return false
			}
			t.up += int64(len(chunk))
			t.metrics.RelayedUp(len(chunk))
		}
		if cut >= 0 {
			// Anything after Terminate is ignored, as PostgreSQL does.
			terminated = sc.atBoundary()
			return false
		}
		return true
	}
	// Bytes the client pipelined during authentication sit in the
	// buffered reader; after them, read the socket directly and let the
	// reader's buffer go.
	if n := t.client.r.Buffered(); n > 0 {
		pending, _ := t.client.r.Peek(n)
		more := forward(append([]byte(nil), pending...))
		t.client.r.Discard(n)
		if !more {
			return terminated && !failed
		}
	}
	if t.heldTaken {
		held := t.held
		t.held = nil
		if len(held) > 0 && !forward(held) {
			return terminated && !failed
		}
		if t.heldErr != nil {
			return false
		}
	}
	t.client.r = nil
	pumpClient(t.client.Conn, forward, t.heldTaken)
	return terminated && !failed
}

package backend

import (
	"container/list"
	"context"
	"errors"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgwarden/pgwarden/config"
)

// Key identifies which parked backends may serve a client: the same server,
// role, database and startup parameters, logged in under the same backend
// TLS settings.
type Key struct {
	Host     string
	Port     int
	Role     string
	Database string
	Params   string // the client's startup parameters, sorted, NUL-joined
	TLS      string // config.Backend.TLSDigest of the login
}

// NewKey builds the pool key of a login.
func NewKey(t Target, params map[string]string) Key {
	kv := make([]string, 0, len(params))
	for k, v := range params {
		if k != "user" && k != "database" {
			kv = append(kv, k+"="+v)
		}
	}
	sort.Strings(kv)
	return Key{Host: t.Host, Port: t.Port, Role: t.Role, Database: t.Database, Params: strings.Join(kv, "\x00"), TLS: t.TLS}
}

// Session is a logged-in backend connection that may outlive its client.
type Session struct {
	Conn   net.Conn
	Key    Key
	PID    uint32
	Secret []byte
	// Params are the ParameterStatus values as the backend last reported
	// them; read-only once shared (ShareParams), changed by SetParam.
	Params  map[string]string
	Created time.Time
	// CancelNetwork and CancelAddr are where CancelRequests go.
	CancelNetwork, CancelAddr string
	Reuses                    int
	// Settings is what SettingsQuery answered when the backend started:
	// the role and database settings it applied at login.
	Settings string

	parkedAt     time.Time
	paramsShared bool
}

// ErrTooManyBackends means max_backend_connections is reached and no
// parked backend or idle HTTP connection could be closed to make room.
var ErrTooManyBackends = errors.New("too many backend connections")

// LimitsOf reads the [backend] pool settings in force. The clients'
// backends (wire and HTTP) may use max_backend_connections less the
// connections pgwarden keeps to that server for itself ([auth_query], a
// PostgreSQL store there), so that pgwarden as a whole stays within it.
func LimitsOf(c *config.Config) PoolLimits {
	return PoolLimits{
		PerKey:      c.Backend.PoolSize,
		Max:         c.Backend.MaxBackendConnections - c.OwnBackendConns(),
		IdleTimeout: c.Backend.IdleTimeout.Duration,
		MaxLifetime: c.Backend.MaxLifetime.Duration,
		TLS:         c.Backend.TLSDigest,
		Connect:     c.Backend.ConnectTimeout.Duration,
	}
}

// Pool keeps backends whose clients left while they were idle, for the
// next client with the same key; and it counts every backend, in use or
// parked, of the wire and of the HTTP pools, against
// max_backend_connections.
type Pool struct {
	mu     sync.Mutex
	parked map[Key][]*Session
	shed   func() bool // see SetShed
	http   int         // of total, the HTTP pools' connections
	total  int         // backends open: in use plus parked
	// waiters are the logins and HTTP connections waiting at the limit,
	// in the order they came (see ReserveOrQueue): each release wakes the
	// first.
	waiters list.List
	// released holds, per database a statement asked to release (see
	// ReleaseDatabases), until when a returning backend of it is closed
	// instead of parked.
	released map[releasedDB]time.Time

	// ending are the abandoned backends that still owe answers, counted
	// in total until they have given them (see Abandon).
	ending  map[net.Conn]struct{}
	endings sync.WaitGroup

	reused atomic.Int64
	closed atomic.Int64

	stop chan struct{}
	done chan struct{}
}

// PoolLimits are the [backend] settings in force; passed on each call so a
// reload changes them at once.
type PoolLimits struct {
	PerKey      int
	Max         int
	IdleTimeout time.Duration
	MaxLifetime time.Duration
	// TLS is the backend TLS settings' digest in force: a backend logged
	// in under others is closed rather than parked, and closed when parked.
	TLS string
	// Connect is connect_timeout.
	Connect time.Duration
}

// NewPool makes an empty pool; Start runs its janitor.
func NewPool() *Pool {
	return &Pool{parked: map[Key][]*Session{}, released: map[releasedDB]time.Time{}, stop: make(chan struct{}), done: make(chan struct{})}
}

// releasedDB is a database on one server.
type releasedDB struct {
	host string
	port int
	name string
}

// ReleaseWindow is how long, after a statement asked to release a
// database, backends of it are closed rather than parked: PostgreSQL's
// DROP DATABASE waits up to 5 seconds for other sessions to leave, so a
// backend whose reset was in flight must not settle in the pool meanwhile.
const ReleaseWindow = 5 * time.Second

// ReleaseDatabases closes the parked backends of the named databases on
// the server host:port, and for ReleaseWindow closes any of them that
// comes back, so that a DROP DATABASE, ALTER DATABASE or CREATE DATABASE
// ... TEMPLATE does not find them connected. names are as a statement
// gave them (see DatabaseDDLDetector).
func (p *Pool) ReleaseDatabases(host string, port int, names []string, now time.Time) {
	if len(names) == 0 {
		return
	}
	var old []*Session
	p.mu.Lock()
	for _, n := range names {
		// Any client can send such text: the window is bounded, and a
		// flood of names only costs the parked backends it closes.
		if len(p.released) < maxReleased {
			p.released[releasedDB{host, port, n}] = now.Add(ReleaseWindow)
		}
	}
	for k, list := range p.parked {
		if k.Host != host || k.Port != port || !namedIn(k.Database, names) {
			continue
		}
		old = append(old, list...)
		delete(p.parked, k)
	}
	p.closedLocked(len(old))
	p.mu.Unlock()
	p.closeAll(old)
}

// namedIn reports whether database db is one of names.
func namedIn(db string, names []string) bool {
	for _, n := range names {
		if sameDatabase(n, db) {
			return true
		}
	}
	return false
}

// maxReleased bounds the release windows kept at once.
const maxReleased = 1024

// releasedLocked reports whether k's database is within its release
// window: one map lookup, as Put runs it for every returning backend.
func (p *Pool) releasedLocked(k Key, now time.Time) bool {
	if len(p.released) == 0 {
		return false
	}
	until, ok := p.released[releasedDB{k.Host, k.Port, clippedName(k.Database)}]
	return ok && now.Before(until)
}

// Start closes parked backends past their idle timeout or lifetime, every
// few seconds, until Close.
func (p *Pool) Start(limits func() PoolLimits) {
	go janitor(2*time.Second, p.stop, p.done, func() { p.expire(limits(), time.Now()) })
}

// janitor runs sweep every interval until stop closes, then closes done.
// Both backend pools keep house with it.
func janitor(every time.Duration, stop <-chan struct{}, done chan<- struct{}, sweep func()) {
	defer close(done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			sweep()
		}
	}
}

func (p *Pool) expire(l PoolLimits, now time.Time) {
	var old []*Session
	p.mu.Lock()
	for r, until := range p.released {
		if !now.Before(until) {
			delete(p.released, r)
		}
	}
	for k, list := range p.parked {
		keep := list[:0]
		for _, s := range list {
			if now.Sub(s.parkedAt) > l.IdleTimeout || (l.MaxLifetime > 0 && now.Sub(s.Created) > l.MaxLifetime) || s.Key.TLS != l.TLS {
				old = append(old, s)
				continue
			}
			keep = append(keep, s)
		}
		if len(keep) == 0 {
			delete(p.parked, k)
		} else {
			p.parked[k] = keep
		}
	}
	p.closedLocked(len(old))
	p.mu.Unlock()
	p.closeAll(old)
}

func (p *Pool) closeAll(list []*Session) {
	for _, s := range list {
		s.Conn.Close()
		p.closed.Add(1)
	}
}

// Get hands out a parked backend for key, or nil. The newest is taken:
// it is the least likely to hit the idle timeout soon.
func (p *Pool) Get(key Key, l PoolLimits, now time.Time) *Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		list := p.parked[key]
		if len(list) == 0 {
			return nil
		}
		s := list[len(list)-1]
		p.parked[key] = list[:len(list)-1]
		if len(p.parked[key]) == 0 {
			delete(p.parked, key)
		}
		if l.MaxLifetime > 0 && now.Sub(s.Created) > l.MaxLifetime {
			p.closedLocked(1)
			go p.closeAll([]*Session{s})
			continue
		}
		s.Reuses++
		p.reused.Add(1)
		return s
	}
}

// SetShed gives the pool a way to close one idle connection counted
// against it from elsewhere (the HTTP frontend's pools): shed closes one
// and gives its reservation back before it returns, and reports whether
// there was one. Set it before the pool is used.
func (p *Pool) SetShed(shed func() bool) { p.shed = shed }

// Reserve counts a new backend connection about to be opened, by either
// frontend: max_backend_connections bounds them together. At the limit it
// closes the longest-parked backend of any key to make room, else an idle
// HTTP connection (SetShed); when there is neither it fails (see
// ReserveOrQueue for waiting one's turn instead).
func (p *Pool) Reserve(l PoolLimits) error {
	for shed := 0; ; shed++ {
		p.mu.Lock()
		if p.total < l.Max {
			p.total++
			p.mu.Unlock()
			return nil
		}
		var oldest *Session
		var oldestKey Key
		for k, list := range p.parked {
			if len(list) > 0 && (oldest == nil || list[0].parkedAt.Before(oldest.parkedAt)) {
				oldest, oldestKey = list[0], k
			}
		}
		if oldest != nil {
			p.parked[oldestKey] = p.parked[oldestKey][1:]
			if len(p.parked[oldestKey]) == 0 {
				delete(p.parked, oldestKey)
			}
			// total stays: the evicted backend's slot goes to the new one.
			p.mu.Unlock()
			p.closeAll([]*Session{oldest})
			return nil
		}
		p.mu.Unlock()
		// The slot an idle HTTP connection gives back may be taken by
		// another login first: try a few.
		if p.shed == nil || shed == 3 || !p.shed() {
			return ErrTooManyBackends
		}
	}
}

// Put parks a reset, idle backend; when its key already has pool_size
// parked, its lifetime is over, its database was just released, or a
// reload changed the backend TLS settings since its login, it is closed
// instead.
func (p *Pool) Put(s *Session, l PoolLimits, now time.Time) {
	p.mu.Lock()
	if len(p.parked[s.Key]) >= l.PerKey || (l.MaxLifetime > 0 && now.Sub(s.Created) > l.MaxLifetime) || p.releasedLocked(s.Key, now) || s.Key.TLS != l.TLS {
		p.closedLocked(1)
		p.mu.Unlock()
		p.closeAll([]*Session{s})
		return
	}
	s.parkedAt = now
	p.parked[s.Key] = append(p.parked[s.Key], s)
	// A login waiting at the limit may take it, or close it for its slot.
	p.wakeLocked(1)
	p.mu.Unlock()
}

// Discard closes a backend that may not be reused (see Abandon for one
// that still owes answers).
func (p *Pool) Discard(s *Session) {
	p.mu.Lock()
	p.closedLocked(1)
	p.mu.Unlock()
	p.closeAll([]*Session{s})
}

// Release gives back a reservation whose connection never opened.
func (p *Pool) Release() {
	p.mu.Lock()
	p.closedLocked(1)
	p.mu.Unlock()
}

// closedLocked takes n closed backends off the count and wakes whoever
// waits for a release.
func (p *Pool) closedLocked(n int) {
	if n == 0 {
		return
	}
	p.total -= n
	p.wakeLocked(n)
}

// reserveHTTP is Reserve for a connection of the HTTP pools; at the limit
// it waits its turn (ReserveOrQueue), within ctx (pgconn bounds a dial's
// ctx by connect_timeout) less what the login after it needs.
func (p *Pool) reserveHTTP(ctx context.Context, l PoolLimits) error {
	// The dial's ctx bounds the whole backend login: a wait to its very
	// end would leave the login no time, so half of connect_timeout is
	// kept for it.
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(defaultReleaseWait)
	} else {
		deadline = deadline.Add(-l.Connect / 2)
	}
	var w *Waiter
	for {
		if w = p.ReserveOrQueue(l, w); w == nil {
			break
		}
		if !p.WaitTurn(ctx, w, deadline) {
			return ErrTooManyBackends
		}
	}
	p.mu.Lock()
	p.http++
	p.mu.Unlock()
	return nil
}

// defaultReleaseWait bounds a wait for a release whose caller gave no
// deadline.
const defaultReleaseWait = 5 * time.Second

// releaseHTTP gives back the reservation of an HTTP pool's connection.
func (p *Pool) releaseHTTP() {
	p.mu.Lock()
	p.http--
	p.closedLocked(1)
	p.mu.Unlock()
}

// Waiter is a place in line for a backend at max_backend_connections.
//
// A login refused by Reserve waits for a release (a backend closed or
// parked, a reservation given back) and tries again: a burst of short
// sessions then waits for the sessions ending around it, which the pool
// cannot tell apart from busy ones (a client's Terminate may still be on
// its way when the next client's login arrives), instead of being refused.
// Each release wakes the first in line only, so a thousand logins waiting
// cost nothing per release but the one woken (a broadcast would wake them
// all, each to look at the pool, at every release).
type Waiter struct {
	turn chan struct{} // the wake-up of a release; buffered, sent once
	elem *list.Element // in Pool.waiters while in line, nil once woken
}

// ReserveOrQueue is Reserve that, at the limit, puts the login in line
// and returns its place, to wait on with WaitTurn; nil when it reserved.
// again is the Waiter of a turn that found the room taken (by a login that
// came without waiting): it goes back to the front of the line.
func (p *Pool) ReserveOrQueue(l PoolLimits, again *Waiter) *Waiter {
	if p.Reserve(l) == nil {
		return nil
	}
	w := p.queue(again)
	// Once more, in line: a release between the refusal and the queueing
	// woke nobody.
	if p.Reserve(l) == nil {
		p.leave(w)
		return nil
	}
	return w
}

// queue puts a login in line: at the end, or again at the front.
func (p *Pool) queue(again *Waiter) *Waiter {
	p.mu.Lock()
	defer p.mu.Unlock()
	if again != nil && again.elem == nil {
		again.elem = p.waiters.PushFront(again)
		return again
	}
	w := &Waiter{turn: make(chan struct{}, 1)}
	w.elem = p.waiters.PushBack(w)
	return w
}

// leave takes w out of line without waiting (its Reserve succeeded, or
// its wait ended); a wake-up it was given meanwhile goes to the next in
// line.
func (p *Pool) leave(w *Waiter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.elem != nil {
		p.waiters.Remove(w.elem)
		w.elem = nil
		return
	}
	select {
	case <-w.turn:
		p.wakeLocked(1) // woken, but not for its use: pass it on
	default:
	}
}

// WaitTurn waits until a release wakes w (true: try again; queue anew to
// wait again), or until ctx ends or the deadline passes (false). w is out
// of line when it returns.
func (p *Pool) WaitTurn(ctx context.Context, w *Waiter, deadline time.Time) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-w.turn:
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	p.leave(w)
	return false
}

// PassTurn gives the turn a WaitTurn returned true for, which its login
// will not use (its client left), to the next in line.
func (p *Pool) PassTurn() {
	p.mu.Lock()
	p.wakeLocked(1)
	p.mu.Unlock()
}

// wakeLocked wakes the first n in line.
func (p *Pool) wakeLocked(n int) {
	for ; n > 0 && p.waiters.Len() > 0; n-- {
		w := p.waiters.Remove(p.waiters.Front()).(*Waiter)
		w.elem = nil
		w.turn <- struct{}{}
	}
}

// Stats are the pool's figures.
type Stats struct {
	Parked, InUse int // the wire's backends
	// Ending are the backends of InUse whose client left while they
	// still owe answers (see Abandon).
	Ending         int
	HTTP           int // the HTTP pools' connections, in use or idle
	Reused, Closed int64
	// Waiting are the logins and HTTP connections waiting at
	// max_backend_connections for a backend to be released.
	Waiting     int
	ParkedByKey map[Key]int
}

// Stats reports the pool's figures now.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Stats{ParkedByKey: map[Key]int{}, Reused: p.reused.Load(), Closed: p.closed.Load()}
	for k, list := range p.parked {
		st.Parked += len(list)
		st.ParkedByKey[k] = len(list)
	}
	st.HTTP = p.http
	st.InUse = p.total - st.Parked - p.http
	st.Ending = len(p.ending)
	st.Waiting = p.waiters.Len()
	return st
}

// Close closes every parked backend and stops the janitor.
func (p *Pool) Close() {
	select {
	case <-p.stop:
		return
	default:
		close(p.stop)
	}
	select {
	case <-p.done:
	case <-time.After(time.Second):
	}
	p.mu.Lock()
	var all []*Session
	for k, list := range p.parked {
		all = append(all, list...)
		delete(p.parked, k)
	}
	p.closedLocked(len(all))
	p.mu.Unlock()
	p.closeAll(all)
	p.closeEnding()
}

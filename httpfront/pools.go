package httpfront

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/snapshot"
)

// maxConnsPerPool bounds the backend connections one (role, database)
// holds for HTTP requests.
const maxConnsPerPool = 10

// pools keeps one bounded pgxpool per backend login (host, port, role,
// database, password); a pool unused for [backend] idle_timeout is closed.
type pools struct {
	log  *zap.Logger
	mu   sync.Mutex
	m    map[[32]byte]*poolEntry
	stop chan struct{}
	done chan struct{}
}

type poolEntry struct {
	pool     *pgxpool.Pool
	lastUsed time.Time
}

func newPools(log *zap.Logger) *pools {
	return &pools{log: log, m: map[[32]byte]*poolEntry{}, stop: make(chan struct{}), done: make(chan struct{})}
}

// start runs the janitor that closes idle pools until close.
func (p *pools) start(state *snapshot.Holder) {
	go func() {
		defer close(p.done)
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.closeIdle(state.Current().Config.Backend.IdleTimeout.Duration)
			}
		}
	}()
}

func (p *pools) closeIdle(idle time.Duration) {
	p.mu.Lock()
	var old []*pgxpool.Pool
	for k, e := range p.m {
		if time.Since(e.lastUsed) > idle {
			old = append(old, e.pool)
			delete(p.m, k)
		}
	}
	p.mu.Unlock()
	for _, pl := range old {
		pl.Close()
	}
}

func (p *pools) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
		select {
		case <-p.done:
		case <-time.After(time.Second):
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, e := range p.m {
		e.pool.Close()
		delete(p.m, k)
	}
}

// get returns the pool for t, making it when needed. The key hashes the
// password rather than holding it in a map key.
func (p *pools) get(snap *snapshot.Snapshot, t backend.Target) (*pgxpool.Pool, error) {
	key := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d\x00%s\x00%s\x00%s", t.Host, t.Port, t.Role, t.Database, t.Password)))
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.m[key]; e != nil {
		e.lastUsed = time.Now()
		return e.pool, nil
	}
	pc, err := backend.Config(snap.Config, t, map[string]string{"application_name": "pgwarden-http"})
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.Config = *pc
	cfg.MaxConns = maxConnsPerPool
	cfg.MaxConnIdleTime = snap.Config.Backend.IdleTimeout.Duration
	cfg.MaxConnLifetime = snap.Config.Backend.MaxLifetime.Duration
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	p.m[key] = &poolEntry{pool: pool, lastUsed: time.Now()}
	return pool, nil
}

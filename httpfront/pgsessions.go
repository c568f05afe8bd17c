package httpfront

import (
	"context"
	"encoding/base64"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/authcore"
)

// SessionStore keeps console sessions: Sessions in memory for one
// instance, PGSessions in the PostgreSQL store for all of them.
type SessionStore interface {
	Create(u *authcore.User, now time.Time) (string, Session)
	Get(id string, lim SessionLimits, now time.Time) (Session, bool)
	Delete(id string)
	EndUser(name string) int
	Sweep(lim SessionLimits, now time.Time, held func(Session) bool) int
	Len() int
}

var _ SessionStore = (*Sessions)(nil)

// PGSessions keeps console sessions in the PostgreSQL store's
// pgwarden.sessions, so a login on one instance holds on every other
// (plain round robin works). Ids are stored as their SHA-256, as in
// memory. Every console request reads its session there: the console is a
// person's pace, not a hot path. A store that fails is a session that is
// not found (the user logs in again, which the store's outage refuses).
type PGSessions struct {
	pool       *pgxpool.Pool
	log        *zap.Logger
	maxPerUser int
}

// NewPGSessions keeps sessions in pool's store, as many per user as the
// in-memory store allows (the least recently used ends first).
func NewPGSessions(pool *pgxpool.Pool, log *zap.Logger) *PGSessions {
	return &PGSessions{pool: pool, log: log, maxPerUser: maxSessionsPerUser}
}

const pgSessionTimeout = 5 * time.Second

func (p *PGSessions) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), pgSessionTimeout)
}

// Create implements SessionStore.
func (p *PGSessions) Create(u *authcore.User, now time.Time) (string, Session) {
	id := NewOpaqueID()
	sess := Session{User: u.Name, CSRF: base64.RawURLEncoding.EncodeToString(randomBytes(32)), Created: now, LastSeen: now, cred: credDigest(u)}
	k := sessionKey(id)
	ctx, cancel := p.ctx()
	defer cancel()
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM pgwarden.sessions WHERE id_hash IN (
			SELECT id_hash FROM pgwarden.sessions WHERE user_name = $1 ORDER BY last_seen DESC OFFSET $2)`, u.Name, p.maxPerUser-1); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO pgwarden.sessions (id_hash, user_name, csrf, cred, created, last_seen) VALUES ($1, $2, $3, $4, $5, $5)`,
			k[:], sess.User, sess.CSRF, sess.cred[:], now)
		return err
	})
	if err != nil {
		p.log.Error("could not store a console session", zap.String("user", u.Name), zap.Error(err))
		// A session the store does not hold is never found again: the
		// login answers, the next page asks to log in.
	}
	return id, sess
}

// Get implements SessionStore.
func (p *PGSessions) Get(id string, lim SessionLimits, now time.Time) (Session, bool) {
	if !WellFormedSessionID(id) {
		return Session{}, false
	}
	k := sessionKey(id)
	ctx, cancel := p.ctx()
	defer cancel()
	var sess Session
	var cred []byte
	// Only a live session is found, and marked used.
	err := p.pool.QueryRow(ctx, `UPDATE pgwarden.sessions SET last_seen = $2
		WHERE id_hash = $1 AND last_seen > $3 AND created > $4
		RETURNING user_name, csrf, cred, created, last_seen`, k[:], now, now.Add(-lim.Idle), now.Add(-lim.Absolute)).Scan(&sess.User, &sess.CSRF, &cred, &sess.Created, &sess.LastSeen)
	if err != nil {
		if err != pgx.ErrNoRows {
			p.log.Warn("could not read a console session from the store", zap.Error(err))
		}
		return Session{}, false
	}
	copy(sess.cred[:], cred)
	return sess, true
}

// Delete implements SessionStore.
func (p *PGSessions) Delete(id string) {
	if !WellFormedSessionID(id) {
		return
	}
	k := sessionKey(id)
	ctx, cancel := p.ctx()
	defer cancel()
	p.pool.Exec(ctx, `DELETE FROM pgwarden.sessions WHERE id_hash = $1`, k[:])
}

// EndUser implements SessionStore.
func (p *PGSessions) EndUser(name string) int {
	ctx, cancel := p.ctx()
	defer cancel()
	tag, err := p.pool.Exec(ctx, `DELETE FROM pgwarden.sessions WHERE user_name = $1`, name)
	if err != nil {
		return 0
	}
	return int(tag.RowsAffected())
}

// Sweep implements SessionStore.
func (p *PGSessions) Sweep(lim SessionLimits, now time.Time, held func(Session) bool) int {
	ctx, cancel := p.ctx()
	defer cancel()
	tag, err := p.pool.Exec(ctx, `DELETE FROM pgwarden.sessions WHERE last_seen <= $1 OR created <= $2`, now.Add(-lim.Idle), now.Add(-lim.Absolute))
	if err != nil {
		return 0
	}
	n := int(tag.RowsAffected())
	rows, err := p.pool.Query(ctx, `SELECT id_hash, user_name, cred FROM pgwarden.sessions`)
	if err != nil {
		return n
	}
	var gone [][]byte
	for rows.Next() {
		var k, cred []byte
		var x Session
		if rows.Scan(&k, &x.User, &cred) == nil {
			copy(x.cred[:], cred)
			if !held(x) {
				gone = append(gone, k)
			}
		}
	}
	rows.Close()
	for _, k := range gone {
		if _, err := p.pool.Exec(ctx, `DELETE FROM pgwarden.sessions WHERE id_hash = $1`, k); err == nil {
			n++
		}
	}
	return n
}

// Len implements SessionStore.
func (p *PGSessions) Len() int {
	ctx, cancel := p.ctx()
	defer cancel()
	var n int
	p.pool.QueryRow(ctx, `SELECT count(*) FROM pgwarden.sessions`).Scan(&n)
	return n
}

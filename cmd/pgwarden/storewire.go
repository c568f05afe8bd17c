package main

import (
	"context"
	"errors"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/httpfront"
	"github.com/pgwarden/pgwarden/internal/logpace"
	"github.com/pgwarden/pgwarden/metrics"
	"github.com/pgwarden/pgwarden/snapshot"
	"github.com/pgwarden/pgwarden/store"
)

// openStore opens the PostgreSQL store when the configuration names one;
// nil for the users file (the snapshot reads it itself).
func openStore(cfgPath string) (store.Users, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil || cfg.Store.Kind != "postgres" {
		return nil, nil // Load reports the configuration's errors
	}
	return store.Open(context.Background(), cfg)
}

// listenStore keeps the instance's users fresh: a NOTIFY reloads, and
// while the LISTEN connection is down every login is refused (what is
// cached may be stale) until a reconnection and a full reload.
//
// A notification whose users are the ones in force (see
// store.Postgres.Fingerprint) reloads nothing: anyone who can connect to
// the store's database can send them.
func listenStore(ctx context.Context, cfg *config.Config, pgs *store.Postgres, state *snapshot.Holder, reload func() error, log *zap.Logger, m *metrics.Metrics, onThrottle func(string)) {
	m.StoreUp(true)
	store.Listen(ctx, cfg, func(payload string) {
		if cur := state.Current(); cur.Login.Unavailable == "" {
			if fp, err := pgs.Fingerprint(ctx); err == nil && fp == cur.Users.Fingerprint() {
				log.Debug("user store notification with the users unchanged: nothing to reload", zap.String("payload", payload))
				return
			}
		}
		if err := reload(); err != nil {
			log.Error("the user store changed but could not be read; logins are refused until it can", zap.Error(err))
			state.SetUnavailable("the user store could not be read after a change")
			m.StoreUp(false)
			return
		}
		m.StoreUp(true)
		log.Debug("user store change applied", zap.String("users", payload))
	}, onThrottle, func(err error) {
		log.Error("lost the user store's LISTEN connection: logins are refused until it is back and reloaded", zap.Error(err))
		state.SetUnavailable("the user store is unreachable")
		m.StoreUp(false)
	})
}

// sharedWeb is what the console shares through the PostgreSQL store: its
// sessions, the pre-login form key and the setup token.
//
// The setup token is shared only while the store holds no admin: with one,
// it is deleted, so that a store whose admins are all removed later gets a
// new token (logged anew) rather than the one of its first install, which
// logs kept since would hold.
func sharedWeb(ctx context.Context, pg *store.Postgres, hasAdmin bool, log *zap.Logger) (httpfront.SessionStore, []byte, string, error) {
	formKey, err := pg.Setting(ctx, "form_key", httpfront.NewOpaqueID)
	if err != nil {
		return nil, nil, "", err
	}
	setup := ""
	if hasAdmin {
		err = pg.DeleteSetting(ctx, setupTokenKey)
	} else {
		setup, err = pg.Setting(ctx, setupTokenKey, httpfront.NewOpaqueID)
	}
	if err != nil {
		return nil, nil, "", err
	}
	return httpfront.NewPGSessions(pg.Pool(), log), []byte(formKey), setup, nil
}

// setupTokenKey is the store's setting that holds the shared setup token.
const setupTokenKey = "setup_token"

// forgetSetupToken deletes the shared setup token once it is spent (best
// effort: the next start with an admin deletes it too).
func forgetSetupToken(ctx context.Context, pg *store.Postgres, log *zap.Logger) {
	if err := pg.DeleteSetting(ctx, setupTokenKey); err != nil {
		log.Warn("the spent setup token could not be deleted from the store", zap.Error(err))
	}
}

// shareThrottle publishes this instance's throttle events through the
// store and returns the handler that applies the other instances' events.
// Events queue in a bounded buffer and go out one at a time; a flood that
// fills it loses events (counted in the log), never blocks a login. Each
// event is sealed (store.ThrottleSeal): a forged or replayed one counts
// for nothing.
func shareThrottle(ctx context.Context, pg *store.Postgres, throttle *authcore.Throttle, state *snapshot.Holder, log *zap.Logger) (func(string), error) {
	keyText, err := pg.Setting(ctx, "throttle_key", httpfront.NewOpaqueID)
	if err != nil {
		return nil, err
	}
	seal := store.NewThrottleSeal(keyText, httpfront.NewOpaqueID())
	queue := make(chan store.ThrottleEvent, 1024)
	var dropped atomic.Int64
	throttle.SetPublisher(func(failure bool, addr, user string) {
		select {
		case queue <- store.ThrottleEvent{Failure: failure, Address: addr, User: user}:
		default:
			if dropped.Add(1)%1000 == 1 {
				log.Warn("throttle events are not reaching the other instances fast enough; some were dropped", zap.Int64("dropped", dropped.Load()))
			}
		}
	})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-queue:
				if err := pg.Notify(ctx, store.ThrottleChannel, seal.Seal(ev)); err != nil {
					log.Debug("could not publish a throttle event", zap.Error(err))
				}
			}
		}
	}()
	// A role that floods the channel would otherwise flood the log.
	var forged, replayed logpace.Count
	return func(payload string) {
		ev, mine, err := seal.Open(payload)
		switch {
		case errors.Is(err, store.ErrThrottleEventForged):
			if n, ok := forged.Add(); ok {
				log.Warn("ignored throttle events not sealed with the store's key (someone else NOTIFYs pgwarden_throttle, or an instance of a version before December 2026 runs beside this one)", zap.Int64("events", n))
			}
			return
		case errors.Is(err, store.ErrThrottleEventReplayed):
			if n, ok := replayed.Add(); ok {
				log.Warn("ignored throttle events seen before or too old (someone sends pgwarden_throttle notifications again, or the instances' clocks are over a minute apart)", zap.Int64("events", n))
			}
			return
		case err != nil || mine:
			return
		}
		cfg := state.Current().Config
		throttle.Apply(ev.Failure, ev.Address, ev.User, cfg.Throttle.FailureDelay.Duration, cfg.Throttle.MaxDelay.Duration)
	}, nil
}

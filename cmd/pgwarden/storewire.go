package main

import (
	"context"

	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/config"
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

// listenStore keeps the instance's users fresh: every NOTIFY reloads, and
// while the LISTEN connection is down every login is refused (what is
// cached may be stale) until a reconnection and a full reload.
func listenStore(ctx context.Context, cfg *config.Config, state *snapshot.Holder, reload func() error, log *zap.Logger, m *metrics.Metrics) {
	m.StoreUp(true)
	store.Listen(ctx, cfg, func(payload string) {
		if err := reload(); err != nil {
			log.Error("the user store changed but could not be read; logins are refused until it can", zap.Error(err))
			state.SetUnavailable("the user store could not be read after a change")
			m.StoreUp(false)
			return
		}
		m.StoreUp(true)
		log.Debug("user store change applied", zap.String("users", payload))
	}, func(err error) {
		log.Error("lost the user store's LISTEN connection: logins are refused until it is back and reloaded", zap.Error(err))
		state.SetUnavailable("the user store is unreachable")
		m.StoreUp(false)
	})
}

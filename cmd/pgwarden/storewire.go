package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/httpfront"
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
func listenStore(ctx context.Context, cfg *config.Config, state *snapshot.Holder, reload func() error, log *zap.Logger, m *metrics.Metrics, onThrottle func(string)) {
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

// throttleEvent is a throttle failure or success on the store's channel.
type throttleEvent struct {
	Instance string `json:"i"`
	Failure  bool   `json:"f"`
	Address  string `json:"a"`
	User     string `json:"u"`
	// MAC signs the rest with the store's shared throttle key: any role
	// that can connect to the store's database can NOTIFY, and a forged
	// failure would hold up a real user's logins.
	MAC string `json:"m"`
}

func (ev throttleEvent) mac(key []byte) string {
	h := hmac.New(sha256.New, key)
	fmt.Fprintf(h, "%s\x00%v\x00%s\x00%s", ev.Instance, ev.Failure, ev.Address, ev.User)
	return hex.EncodeToString(h.Sum(nil))
}

// shareThrottle publishes this instance's throttle events through the
// store and returns the handler that applies the other instances' events.
// Events queue in a bounded buffer and go out one at a time; a flood that
// fills it loses events (counted in the log), never blocks a login.
func shareThrottle(ctx context.Context, pg *store.Postgres, throttle *authcore.Throttle, state *snapshot.Holder, log *zap.Logger) (func(string), error) {
	keyText, err := pg.Setting(ctx, "throttle_key", httpfront.NewOpaqueID)
	if err != nil {
		return nil, err
	}
	key := []byte(keyText)
	self := httpfront.NewOpaqueID()
	queue := make(chan throttleEvent, 1024)
	var dropped atomic.Int64
	throttle.SetPublisher(func(failure bool, addr, user string) {
		select {
		case queue <- throttleEvent{Instance: self, Failure: failure, Address: addr, User: user}:
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
				ev.MAC = ev.mac(key)
				b, _ := json.Marshal(ev)
				if err := pg.Notify(ctx, store.ThrottleChannel, string(b)); err != nil {
					log.Debug("could not publish a throttle event", zap.Error(err))
				}
			}
		}
	}()
	return func(payload string) {
		var ev throttleEvent
		if json.Unmarshal([]byte(payload), &ev) != nil || ev.Instance == self {
			return
		}
		if !hmac.Equal([]byte(ev.MAC), []byte(ev.mac(key))) {
			log.Warn("ignored a throttle event not signed with the store's key (someone else NOTIFYs pgwarden_throttle)")
			return
		}
		cfg := state.Current().Config
		throttle.Apply(ev.Failure, ev.Address, ev.User, cfg.Throttle.FailureDelay.Duration, cfg.Throttle.MaxDelay.Duration)
	}, nil
}

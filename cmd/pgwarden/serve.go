package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/httpfront"
	"github.com/pgwarden/pgwarden/internal/admission"
	"github.com/pgwarden/pgwarden/internal/awake"
	"github.com/pgwarden/pgwarden/internal/memlimit"
	"github.com/pgwarden/pgwarden/internal/memtrim"
	"github.com/pgwarden/pgwarden/metrics"
	"github.com/pgwarden/pgwarden/pgwire"
	"github.com/pgwarden/pgwarden/snapshot"
	"github.com/pgwarden/pgwarden/store"
)

func serve(configPath string, stderr io.Writer) error {
	cfgPath := &configPath
	// PGWARDEN_CPUPROFILE=file writes a CPU profile until the process
	// stops, for performance work (see README, Performance).
	if path := os.Getenv("PGWARDEN_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	// PGWARDEN_PPROF=127.0.0.1:PORT serves Go's profiles (heap, goroutine,
	// CPU) there, for performance work (see README, Performance). Loopback
	// only: the profiles show memory contents' shapes, never to expose.
	if addr := os.Getenv("PGWARDEN_PPROF"); addr != "" {
		if err := servePprof(addr); err != nil {
			return err
		}
	}
	limiter := authcore.NewHashLimiter(0)
	users, err := openStore(*cfgPath)
	if err != nil {
		return err
	}
	if users != nil {
		defer users.Close()
	}
	snap, err := snapshot.LoadFrom(*cfgPath, limiter, users)
	if err != nil {
		return err
	}
	level := zap.NewAtomicLevelAt(parseLevel(snap.Config.Log.Level))
	log := newLogger(snap.Config.Log, level, stderr)
	defer log.Sync()
	if id := snap.Config.Server.PeerID; id != 0 {
		// Every line, the audit log's too, says which instance wrote it.
		log = log.With(zap.Int("peer_id", id))
	}
	snapshot.SetJWKSLogger(log)
	if set, group := memlimit.Apply(); set > 0 {
		log.Info("Go's memory limit set below the control group's, so that garbage is collected before the group's limit is reached (set GOMEMLIMIT to choose another, GOMEMLIMIT=off for none)",
			zap.Int64("control_group_limit", group), zap.Int64("gomemlimit", set))
	}
	state := snapshot.NewHolder(*cfgPath, snap, limiter)
	state.Users = users

	// A failure is remembered for 15 minutes after the last one; 100k
	// sources bound the memory an address-spraying attacker can take.
	throttle := authcore.NewThrottle(100_000, 15*time.Minute)
	throttle.SetIPv6Prefix(snap.Config.Throttle.IPv6Prefix)
	authcore.SetMockSecret(snap.Config.Users.MockAuthSecret)
	m := metrics.NewFor(versionString(), snap.Config.Server.PeerID)
	active := new(atomic.Int64)
	// Both frontends' clients still authenticating, by source: one bound,
	// shared fairly (see admission.Pending).
	pending := admission.New()
	sd := notifier{log: log}
	doReload := func() error {
		sd.reloading()
		err := reload(state, level, log, m)
		throttle.SetIPv6Prefix(state.Current().Config.Throttle.IPv6Prefix)
		authcore.SetMockSecret(state.Current().Config.Users.MockAuthSecret)
		sd.ready(readyStatus(state))
		return err
	}
	// See internal/awake: about a quarter less proxy CPU per login.
	keeper := awake.Start()
	defer keeper.Stop()
	// A DROP, ALTER or CREATE DATABASE from either frontend closes the
	// idle backends of both.
	var web *httpfront.Server
	var pg *pgwire.Server
	releaseDatabases := func(host string, port int, names []string) {
		pg.ReleaseDatabases(host, port, names)
		if web != nil {
			web.ReleaseDatabases(host, port, names)
		}
	}
	pg = pgwire.NewServer(pgwire.Options{State: state, Log: log, Audit: log.Named("audit"), Throttle: throttle, Metrics: m,
		Active: active, Pending: pending, Version: versionString(), Reload: doReload, Keeper: keeper, ReleaseDatabases: releaseDatabases})
	var webNow atomic.Pointer[httpfront.Server]
	state.OnReload = func(old, next *snapshot.Snapshot) {
		pg.EndRevokedSessions(old, next)
		if w := webNow.Load(); w != nil {
			w.UsersChanged(next)
		}
	}
	state.OnUpdate = func(next *snapshot.Snapshot, revoked []string) {
		pg.EndFoundRevocations(revoked)
		if w := webNow.Load(); w != nil {
			w.UsersChanged(next)
		}
	}
	// Signals are caught before any listener opens: a SIGHUP sent as soon
	// as the port accepts must reload, not end the process (SIGHUP's
	// default).
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	if err := pg.Listen(); err != nil {
		return err
	}
	m.RegisterPool(func() metrics.PoolFigures {
		st := pg.PoolStats()
		return metrics.PoolFigures{Parked: st.Parked, InUse: st.InUse, Ending: st.Ending, Waiting: st.Waiting, Reused: st.Reused, Closed: st.Closed}
	})
	webOpts := httpfront.Options{State: state, Log: log, Audit: log.Named("audit"), Throttle: throttle, Metrics: m, Active: active, Pending: pending,
		EndWireSessions: pg.KillUser, Keeper: keeper, ReleaseDatabases: releaseDatabases, BackendBudget: pg.BackendPool()}
	var onThrottle func(string)
	storeCtx, stopStore := context.WithCancel(context.Background())
	defer stopStore()
	if pgs, ok := users.(*store.Postgres); ok {
		if webOpts.Sessions, webOpts.FormKey, webOpts.SetupToken, err = sharedWeb(storeCtx, pgs, snap.Users.AnyWithRole("admin"), log); err != nil {
			pg.Close()
			return err
		}
		webOpts.SetupSpent = func() { go forgetSetupToken(storeCtx, pgs, log) }
		if onThrottle, err = shareThrottle(storeCtx, pgs, throttle, state, log); err != nil {
			pg.Close()
			return err
		}
		if snap.Config.Users.MockAuthSecret == "" {
			// Instances of one store answer an unknown name alike.
			key, err := pgs.Setting(storeCtx, "mock_auth_key", httpfront.NewOpaqueID)
			if err != nil {
				pg.Close()
				return err
			}
			authcore.SetMockSecret(key)
		}
	}
	web = httpfront.New(webOpts)
	webNow.Store(web)
	if err := web.Listen(); err != nil {
		pg.Close()
		return err
	}
	if err := web.ListenMetrics(); err != nil {
		pg.Close()
		web.Close()
		return err
	}
	pg.Serve()
	web.Serve()
	for _, a := range pg.Addrs() {
		log.Info("listening", zap.String("protocol", "pg"), zap.Stringer("address", a))
	}
	for _, a := range web.Addrs() {
		log.Info("listening", zap.String("protocol", "http"), zap.Stringer("address", a))
	}
	if a := web.MetricsAddr(); a != nil {
		log.Info("listening", zap.String("protocol", "metrics"), zap.Stringer("address", a))
	}
	log.Info("pgwarden started", zap.String("version", versionString()), zap.String("config", snap.Config.Path),
		zap.Int("rules", len(snap.Rules)), zap.Int("users", snap.Users.Len()))
	warnAboutConfig(snap, log)
	if len(ignoredEnv) > 0 {
		log.Warn("libpq environment variables ignored: the backend connection comes from the configuration alone", zap.Strings("variables", ignoredEnv))
	}
	sd.ready(readyStatus(state))
	wdCtx, stopWatchdog := context.WithCancel(context.Background())
	defer stopWatchdog()
	sd.watchdog(wdCtx)
	go memtrim.Run(wdCtx, memtrim.Default, nil)
	if pgs, ok := users.(*store.Postgres); ok {
		go listenStore(wdCtx, snap.Config, pgs, state, doReload, log, m, onThrottle)
	}
	// Files are watched as well as SIGHUP is caught: a changed users file,
	// configuration, HBA file or certificate reloads by itself.
	if err := snapshot.WatchFiles(wdCtx, state, doReload, log, fileWatchDebounce); err != nil {
		log.Warn("file watching is off; SIGHUP still reloads", zap.Error(err))
	}

	defer signal.Stop(sigs)
	for sig := range sigs {
		switch sig {
		case syscall.SIGHUP:
			doReload()
		case syscall.SIGTERM:
			timeout := state.Current().Config.Server.ShutdownTimeout.Duration
			log.Info("SIGTERM: draining sessions", zap.Duration("timeout", timeout), zap.Int64("connections", pg.ActiveConnections()))
			sd.stopping(fmt.Sprintf("draining %d connections", pg.ActiveConnections()))
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			done := make(chan struct{})
			go func() {
				web.Shutdown(ctx)
				close(done)
			}()
			pg.Shutdown(ctx)
			<-done
			// The metrics listener served /readyz (503) through the drain.
			web.Close()
			cancel()
			log.Info("stopped")
			return nil
		case syscall.SIGINT:
			log.Info("SIGINT: closing all sessions now")
			sd.stopping("closing all sessions")
			web.Close()
			pg.Close()
			log.Info("stopped")
			return nil
		}
	}
	return nil
}

// fileWatchDebounce is how long changes must be quiet before a reload:
// long enough for a tool that writes a file in several steps.
const fileWatchDebounce = 300 * time.Millisecond

// readyStatus is the STATUS= line systemctl status shows.
func readyStatus(state *snapshot.Holder) string {
	s := state.Current()
	return fmt.Sprintf("serving %s, %s", count(len(s.Rules), "rule"), count(s.Users.Len(), "user"))
}

// reload swaps in a new snapshot; on failure the old one stays in force.
func reload(state *snapshot.Holder, level zap.AtomicLevel, log *zap.Logger, m *metrics.Metrics) error {
	before := state.Current().Config
	s, err := state.Reload()
	if err != nil {
		m.Reload("failed")
		log.Error("reload failed; the previous configuration stays in force", zap.Error(err))
		return err
	}
	m.Reload("ok")
	level.SetLevel(parseLevel(s.Config.Log.Level))
	log.Info("reloaded", zap.Int("rules", len(s.Rules)), zap.Int("users", s.Users.Len()))
	warnAboutConfig(s, log)
	if keys := config.ChangedRestartKeys(before, s.Config); len(keys) > 0 {
		log.Warn("changed keys that only a restart applies; the running values stay", zap.Strings("keys", keys))
	}
	return nil
}

func parseLevel(s string) zapcore.Level {
	l, err := zapcore.ParseLevel(s)
	if err != nil {
		return zapcore.InfoLevel
	}
	return l
}

func newLogger(c config.Log, level zap.AtomicLevel, w io.Writer) *zap.Logger {
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "time"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if c.Format == "console" {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), level))
}

// warnAboutConfig logs what loads but should not stay so (see
// snapshot.Snapshot.Warnings).
func warnAboutConfig(snap *snapshot.Snapshot, log *zap.Logger) {
	for _, w := range snap.Warnings() {
		log.Warn("the configuration loads, but", zap.String("warning", w))
	}
}

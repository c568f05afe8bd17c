package snapshot

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/config"
)

// WatchedFiles are the files a snapshot was loaded from: the
// configuration, the users file, the HBA file and the certificates.
func (s *Snapshot) WatchedFiles() []string { return watchedFiles(s.Config) }

func watchedFiles(c *config.Config) []string {
	files := []string{c.Path, c.Users.File}
	if c.HBAFile != "" {
		files = append(files, c.HBAFile)
	}
	if c.TLS != nil {
		for _, f := range []string{c.TLS.CertFile, c.TLS.KeyFile, c.TLS.ClientCAFile, c.TLS.CRLFile} {
			if f != "" {
				files = append(files, f)
			}
		}
	}
	return files
}

// WatchFiles calls reload when a file the current snapshot was loaded from
// changes, until ctx ends: so instances sharing a users file, or a file
// replaced by configuration management, need no SIGHUP. It watches the
// files' folders (an editor or a deployment tool replaces a file by
// renaming another over it, a Kubernetes ConfigMap swaps a symlink), waits until the changes have been quiet for
// debounce, and reloads only when a file's content differs from what the
// last check saw (a write that changes nothing, or pgwarden's own
// write followed by its own reload, costs at most one reload). reload keeps
// the old state on a file that does not load, as SIGHUP does.
func WatchFiles(ctx context.Context, h *Holder, reload func() error, log *zap.Logger, debounce time.Duration) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	files := map[string]bool{}
	dirs := map[string]bool{}
	sync := func() {
		clear(files)
		want := map[string]bool{}
		for _, f := range h.Current().WatchedFiles() {
			f = filepath.Clean(f)
			files[f] = true
			want[filepath.Dir(f)] = true
			// A file that is a symlink (a users file kept in a
			// secrets folder, linked from the configuration's folder)
			// changes where its target is: that folder is watched too.
			// Until December 2026 only the link's folder was, so a
			// password revoked there kept working until a SIGHUP.
			if real, err := filepath.EvalSymlinks(f); err == nil && real != f {
				want[filepath.Dir(real)] = true
			}
		}
		for d := range dirs {
			if !want[d] {
				_ = w.Remove(d) // a target folder left behind (a ConfigMap's old ..2026_... one)
				delete(dirs, d)
			}
		}
		for d := range want {
			if !dirs[d] {
				if err := w.Add(d); err != nil {
					log.Warn("cannot watch a folder for changes; SIGHUP still reloads", zap.String("folder", d), zap.Error(err))
					continue
				}
				dirs[d] = true
			}
		}
	}
	sync()
	// The files as the snapshot in force read them: a change made after
	// its load and before the watch began (a deployment that rewrites the
	// users file as the service starts) would otherwise count as seen,
	// and a password it revoked keep working until the next change.
	current := fingerprint(files)
	seen := h.Current().loadPrint
	if seen == ([32]byte{}) {
		seen = current
	}
	go func() {
		defer w.Close()
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		if current != seen {
			timer.Reset(debounce)
		}
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				// Any change in a watched folder counts: a Kubernetes
				// ConfigMap swaps a ..data symlink, not the file's name.
				// The fingerprint then tells whether a file changed.
				_ = ev
				timer.Reset(debounce)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warn("file watching error; SIGHUP still reloads", zap.Error(err))
			case <-timer.C:
				now := fingerprint(files)
				if now == seen {
					continue
				}
				log.Info("a configuration file changed: reloading")
				reload()
				sync()
				// The reload read the files as they were at now (or
				// later): a change made while it ran, which a slow
				// reload (an identity provider's keys) leaves time for,
				// must count as unseen, so seen is now, not a fresh look.
				seen = now
				if fingerprint(files) != now {
					timer.Reset(debounce)
				}
			}
		}
	}()
	return nil
}

// loadFingerprint is the fingerprint of the files cfg names for watching,
// with the configuration's contents as configBytes (what was parsed).
func loadFingerprint(cfg *config.Config, configBytes []byte) [32]byte {
	files := map[string]bool{}
	for _, f := range watchedFiles(cfg) {
		files[filepath.Clean(f)] = true
	}
	return fingerprintWith(files, map[string][]byte{filepath.Clean(cfg.Path): configBytes})
}

// fingerprint hashes the names and contents of files (a missing file
// counts as empty), in a fixed order.
func fingerprint(files map[string]bool) [32]byte { return fingerprintWith(files, nil) }

// fingerprintWith is fingerprint with the contents of some files given.
func fingerprintWith(files map[string]bool, given map[string][]byte) [32]byte {
	names := make([]string, 0, len(files))
	for f := range files {
		names = append(names, f)
	}
	sort.Strings(names)
	hs := sha256.New()
	for _, f := range names {
		hs.Write([]byte(f))
		hs.Write([]byte{0})
		b, ok := given[f]
		if !ok {
			b, _ = os.ReadFile(f)
		}
		sum := sha256.Sum256(b)
		hs.Write(sum[:])
	}
	var out [32]byte
	copy(out[:], hs.Sum(nil))
	return out
}

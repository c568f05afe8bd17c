package authcore

import (
	"context"
	"log/slog"
	"net/http"
	neturl "net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/pgwarden/pgwarden/config"
)

// JWKS keeps the key sets of [[jwt_issuers]] from one load to the next.
// A set is fetched when a load first names its URL, and from then on only
// by its own refreshes: a reload (a users-file change, a revoked password)
// neither waits for an identity provider, nor loses the last good keys
// when the provider is down at that moment. Before, every load fetched
// every set again, within the 10 s fetch timeout: a provider that did not
// answer held each reload, and with it the revocation it carried, for 10 s
// per issuer, and a fetch that failed left the new state without keys
// until the next refresh.
type JWKS struct {
	client *http.Client
	log    atomic.Pointer[zap.Logger] // failed fetches; slog's default until set

	mu   sync.Mutex
	sets map[jwksKey]*jwksSet
}

// jwksKey is what a set is kept for: a change of either starts a new one.
type jwksKey struct {
	url     string
	refresh time.Duration
}

type jwksSet struct {
	kf     keyfunc.Keyfunc
	cancel context.CancelFunc // ends its refreshes
}

// NewJWKS keeps key sets fetched with client.
func NewJWKS(client *http.Client) *JWKS {
	return &JWKS{client: client, sets: map[jwksKey]*jwksSet{}}
}

// SetLogger sends failed fetches to log (they went to the standard
// library's logger, as plain text among pgwarden's JSON lines).
func (j *JWKS) SetLogger(log *zap.Logger) { j.log.Store(log) }

// fetchFailed logs a failed fetch of url's key set. The last good keys
// stay in use.
func (j *JWKS) fetchFailed(url string) func(context.Context, error) {
	// A password in the URL's user part is not logged.
	if u, err := neturl.Parse(url); err == nil {
		url = u.Redacted()
	}
	return func(ctx context.Context, err error) {
		if log := j.log.Load(); log != nil {
			log.Warn("an identity provider's key set could not be fetched; the last keys fetched stay in use", zap.String("jwks_url", url), zap.Error(err))
			return
		}
		slog.Default().ErrorContext(ctx, "an identity provider's key set could not be fetched", "jwks_url", url, "error", err)
	}
}

// keyfunc is the kept set for url and refresh, fetched now (bounded by the
// client's and the fetch's timeouts) when no load named it before. A set
// whose first fetch fails is kept too: its keys come with a refresh.
func (j *JWKS) keyfunc(url string, refresh time.Duration) (keyfunc.Keyfunc, error) {
	k := jwksKey{url, refresh}
	j.mu.Lock()
	defer j.mu.Unlock()
	if s, ok := j.sets[k]; ok {
		return s.kf, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	noErr := true
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{url}, keyfunc.Override{
		Client:            j.client,
		HTTPTimeout:       10 * time.Second,
		RefreshInterval:   refresh,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(time.Minute), 1),
		// Never queue behind the limiter: a token with an unknown kid
		// is refused at once rather than holding its request for up
		// to a minute (jwkset's default), which a flood could abuse.
		RateLimitWaitMax:          time.Millisecond,
		NoErrorReturnFirstHTTPReq: &noErr,
		RefreshErrorHandlerFunc:   j.fetchFailed,
	})
	if err != nil {
		cancel()
		return nil, err
	}
	j.sets[k] = &jwksSet{kf: kf, cancel: cancel}
	return kf, nil
}

// Keep ends the refreshes of the sets cfg does not name. Call it once cfg
// is in force: a load that failed must not end the sets of the state that
// stays.
func (j *JWKS) Keep(cfg *config.Config) {
	named := map[jwksKey]bool{}
	for _, is := range cfg.JWTIssuers {
		named[jwksKey{is.JWKSURL, is.Refresh.Duration}] = true
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for k, s := range j.sets {
		if !named[k] {
			s.cancel()
			delete(j.sets, k)
		}
	}
}

// Len is the number of sets kept (for tests).
func (j *JWKS) Len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.sets)
}

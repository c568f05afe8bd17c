package authcore

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	neturl "net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/pgwarden/pgwarden/config"
)

// JWKS keeps the key sets of [[jwt_issuers]] from one load to the next.
// A set is fetched when a load first names its URL; after that, a load
// fetches it again in the background and puts the new keys in force only
// once they arrived: a reload (a users-file change, a revoked password)
// never waits for an identity provider, a provider that is down at that
// moment leaves the last good keys in use, and a key the provider removed
// (rotated out after a compromise) is dropped by a reload as it was
// before. Before, every load fetched every set and waited, within the 10 s
// fetch timeout: a provider that did not answer held each reload, and
// with it the revocation it carried, for 10 s per issuer, and a fetch that
// failed left the new state without keys until the next refresh.
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

// jwksSet is one kept set. Verification reads kf at each token, so the
// set fetched in the background serves tokens as soon as it is put in.
type jwksSet struct {
	kf         atomic.Pointer[keyfunc.Keyfunc]
	cancel     context.CancelFunc // ends the refreshes of the set in kf
	refetching bool               // a background fetch is under way
	gone       bool               // let go: a fetch under way is dropped
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

// fetch makes a set for k and fetches it now (bounded by the client's and
// the fetch's timeouts); ok says whether that first fetch succeeded. Its
// refreshes run until cancel.
func (j *JWKS) fetch(k jwksKey) (kf keyfunc.Keyfunc, cancel context.CancelFunc, ok bool, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	var first atomic.Bool // set while the first fetch runs
	var failed atomic.Bool
	first.Store(true)
	noErr := true
	kf, err = keyfunc.NewDefaultOverrideCtx(ctx, []string{k.url}, keyfunc.Override{
		Client:            j.client,
		HTTPTimeout:       10 * time.Second,
		RefreshInterval:   k.refresh,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(time.Minute), 1),
		// Never queue behind the limiter: a token with an unknown kid
		// is refused at once rather than holding its request for up
		// to a minute (jwkset's default), which a flood could abuse.
		RateLimitWaitMax:          time.Millisecond,
		NoErrorReturnFirstHTTPReq: &noErr,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			logged := j.fetchFailed(u)
			return func(ctx context.Context, err error) {
				if first.Load() {
					failed.Store(true)
				}
				logged(ctx, err)
			}
		},
	})
	first.Store(false)
	if err != nil {
		cancel()
		return nil, nil, false, err
	}
	return kf, cancel, !failed.Load(), nil
}

// set is the kept set for url and refresh. A set no load named before is
// fetched now, and kept even when that fetch fails (its keys come with a
// refresh); a kept one is fetched again in the background.
func (j *JWKS) set(url string, refresh time.Duration) (*jwksSet, error) {
	k := jwksKey{url, refresh}
	j.mu.Lock()
	defer j.mu.Unlock()
	if s, ok := j.sets[k]; ok {
		if !s.refetching {
			s.refetching = true
			go j.refetch(k, s) // ends within the fetch's timeout
		}
		return s, nil
	}
	kf, cancel, _, err := j.fetch(k)
	if err != nil {
		return nil, err
	}
	s := &jwksSet{cancel: cancel}
	s.kf.Store(&kf)
	j.sets[k] = s
	return s, nil
}

// refetch fetches s again and puts the new keys in force if the fetch
// succeeded and s is still kept.
func (j *JWKS) refetch(k jwksKey, s *jwksSet) {
	kf, cancel, ok, err := j.fetch(k)
	j.mu.Lock()
	defer j.mu.Unlock()
	s.refetching = false
	if err != nil {
		return
	}
	if !ok || s.gone {
		cancel()
		return
	}
	s.cancel()
	s.kf.Store(&kf)
	s.cancel = cancel
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
			s.gone = true
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

// Refetching says whether a background fetch is under way (for tests).
func (j *JWKS) Refetching() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, s := range j.sets {
		if s.refetching {
			return true
		}
	}
	return false
}

// signingKey is the key of set kf that may verify tok. keyfunc's own
// Keyfunc takes a key of any use: one its identity provider marked for
// encryption ("use": "enc", or "key_ops" without "verify"), and, for a
// token without "kid", every key of the set whatever algorithm its JWK
// names. A key is for what its JWK says (RFC 7517 sections 4.2 to 4.4,
// RFC 8725 section 3.1), so here a token is checked only against keys
// meant for verifying signatures of its own algorithm. The key is read
// from kf's storage as keyfunc reads it, so an unknown kid still makes
// the set be fetched again (within its rate limit).
func signingKey(ctx context.Context, kf keyfunc.Keyfunc, tok *jwt.Token) (any, error) {
	alg := tok.Method.Alg()
	usable := func(j jwkset.JWK) error {
		m := j.Marshal()
		if m.USE == jwkset.UseEnc {
			return errors.New(`its JWK is for encryption ("use": "enc"), not signatures`)
		}
		if len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
			return errors.New(`its JWK's "key_ops" do not include "verify"`)
		}
		if m.ALG != "" && m.ALG.String() != alg {
			return fmt.Errorf("its JWK is for %s, the token is %s", m.ALG, alg)
		}
		return nil
	}
	public := func(j jwkset.JWK) any {
		k := j.Key()
		if pk, ok := k.(interface{ Public() crypto.PublicKey }); ok {
			return pk.Public()
		}
		return k
	}
	if v, ok := tok.Header["kid"]; ok {
		kid, ok := v.(string)
		if !ok {
			return nil, errors.New(`"kid" is not a string`)
		}
		j, err := kf.Storage().KeyRead(ctx, kid)
		if err != nil {
			return nil, fmt.Errorf("no key %q in the issuer's key set: %w", kid, err)
		}
		if err := usable(j); err != nil {
			return nil, fmt.Errorf("key %q: %w", kid, err)
		}
		return public(j), nil
	}
	all, err := kf.Storage().KeyReadAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("the issuer's key set: %w", err)
	}
	var set jwt.VerificationKeySet
	for _, j := range all {
		if usable(j) == nil {
			set.Keys = append(set.Keys, public(j))
		}
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("no key of the issuer's set verifies %s signatures", alg)
	}
	return set, nil
}

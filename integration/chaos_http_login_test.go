package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The HTTP side of TestRandomLoginsGetInExactlyWhenTheirRuleSaysSo: random
// requests to /_sql carry no credentials, Basic or inline credentials
// (right, wrong, empty, another user's, for unknown and misspelled
// users), pgwarden's own tokens (valid, or signed with another user's
// secret, unsigned, expired, without exp, from the future, naming another
// issuer, with a jku header, or garbage), or two kinds at once. A model of
// the rules says which must be answered 200, and as whom: the statement
// reports current_user, which must be the user the model names (the
// default user when nothing was sent).
func TestRandomHTTPRequestsAreLetInExactlyWhenTheirRuleSaysSo(t *testing.T) {
	seed, requests := chaosSettings(t, 250)
	aliceSecret, carolSecret, eveSecret := strings.Repeat("QUJD", 11), strings.Repeat("Q0FS", 11), strings.Repeat("RVZF", 11)
	users := []testUser{
		{name: "alice", password: "alice-Pass-1", extra: fmt.Sprintf("secret = %q\n", aliceSecret)},
		{name: "bob", password: "bob-Pass-2", algo: "bcrypt"},
		{name: "carol", password: "carol-Pass-3", extra: fmt.Sprintf("secret = %q\n", carolSecret)},
		{name: "eve", extra: fmt.Sprintf("secret = %q\n", eveSecret)},
		{name: "erin", password: "erin-Pass-6"},
	}
	g := startGatewayWith(t, gwOptions{http: true, httpSection: "default_user = \"eve\"\ndefault_database = \"postgres\""}, `
[tokens]

[[hba]]
protocol = "http"
user = ["eve"]
method = "trust"

[[hba]]
protocol = "http"
user = ["erin"]
method = "reject"

[[hba]]
protocol = "http"
user = ["carol"]
method = "jwt"

[[hba]]
protocol = "http"
user = ["alice"]
database = ["app_prod"]
method = "reject"

[[hba]]
protocol = "http"
method = "password"
`, users)
	m := httpLoginModel{
		passwords: map[string]string{"alice": "alice-Pass-1", "bob": "bob-Pass-2", "carol": "carol-Pass-3", "erin": "erin-Pass-6"},
		secrets:   map[string]string{"alice": aliceSecret, "carol": carolSecret, "eve": eveSecret},
	}
	for _, s := range []string{aliceSecret, carolSecret, eveSecret} {
		noteSecret(s)
	}
	const workers = 4
	var in, out atomic.Int64
	defer func() { t.Logf("%d requests let in, %d refused, each as the rules say", in.Load(), out.Load()) }()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(300+w)))
			client := &http.Client{Timeout: 30 * time.Second}
			for i := 0; i < requests; i++ {
				r := m.random(rng)
				want := m.letIn(r)
				status, got, body, err := r.send(client, g.httpURL())
				if err != nil {
					t.Errorf("request w%d-%d %s: %v", w, i, r, err)
					return
				}
				if status >= 500 {
					t.Errorf("request w%d-%d %s: answered %d (%s): a refusal is never the server's own failure", w, i, r, status, body)
					return
				}
				if (status == 200) != (want != "") || (want != "" && got != want) {
					t.Errorf("request w%d-%d %s: answered %d as %q (%s); the rules say %q", w, i, r, status, got, body, want)
					return
				}
				if status == 200 {
					in.Add(1)
				} else {
					out.Add(1)
				}
			}
		}()
	}
	wg.Wait()
}

type httpLoginModel struct {
	passwords, secrets map[string]string
}

// httpLoginRequest is one random request's credentials.
type httpLoginRequest struct {
	kind   string // none, basic, inline, bearer, basic+inline, two headers
	user   string // the user the credentials name
	db     string // ?db=, "" for none, "twice" for two
	secret string // for tokens: how the token is made
	pwKind string // right, wrong, empty, other
	pw     string
	token  string
}

func (r httpLoginRequest) String() string {
	return fmt.Sprintf("{%s user=%q db=%q pw=%s token=%s}", r.kind, r.user, r.db, r.pwKind, r.secret)
}

var httpLoginUsers = []string{"alice", "bob", "carol", "eve", "erin", "ghost", "Alice"}

func (m httpLoginModel) random(rng *rand.Rand) httpLoginRequest {
	r := httpLoginRequest{
		kind: []string{"none", "basic", "basic", "inline", "bearer", "bearer", "bearer", "basic+inline", "two headers"}[rng.IntN(9)],
		user: httpLoginUsers[rng.IntN(len(httpLoginUsers))],
		db:   []string{"", "", "postgres", "app_prod", "nosuchdb", "twice"}[rng.IntN(6)],
	}
	r.pwKind = []string{"right", "right", "wrong", "empty", "other"}[rng.IntN(5)]
	r.pw = m.passwords[strings.ToLower(r.user)]
	switch r.pwKind {
	case "wrong":
		r.pw += "x"
	case "empty":
		r.pw = ""
	case "other":
		r.pw = m.passwords["alice"]
		if r.user == "alice" {
			r.pw = m.passwords["bob"]
		}
	}
	r.secret = []string{"own", "own", "own", "another user's secret", "unsigned", "expired", "no exp", "from the future", "other issuer", "jku header", "garbage"}[rng.IntN(11)]
	r.token = m.token(r.user, r.secret)
	return r
}

// token makes a token naming sub, made as how says.
func (m httpLoginModel) token(sub, how string) string {
	now := time.Now()
	claims := jwt.MapClaims{"iss": "pgwarden", "sub": sub, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	secret := m.secrets[sub]
	method := jwt.SigningMethod(jwt.SigningMethodHS256)
	header := map[string]any{}
	switch how {
	case "another user's secret":
		secret = m.secrets["alice"]
		if sub == "alice" {
			secret = m.secrets["carol"]
		}
	case "unsigned":
		method = jwt.SigningMethodNone
	case "expired":
		claims["iat"], claims["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	case "no exp":
		delete(claims, "exp")
	case "from the future":
		claims["iat"] = now.Add(time.Hour).Unix()
		claims["nbf"] = now.Add(time.Hour).Unix()
	case "other issuer":
		claims["iss"] = "someone-else"
	case "jku header":
		header["jku"] = "https://attacker.test/jwks.json"
	case "garbage":
		return "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"
	}
	if secret == "" {
		secret = strings.Repeat("WFla", 11) // a user without a secret: any key
	}
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	var key any
	if method == jwt.SigningMethodNone {
		key = jwt.UnsafeAllowNoneSignatureType
	} else {
		b, _ := base64.StdEncoding.DecodeString(secret)
		key = b
	}
	s, err := tok.SignedString(key)
	if err != nil {
		panic(err)
	}
	noteSecret(s)
	return s
}

// letIn is the model: the user the request must run as, or "" when it
// must be refused.
func (m httpLoginModel) letIn(r httpLoginRequest) string {
	known := map[string]bool{"alice": true, "bob": true, "carol": true, "eve": true, "erin": true}[r.user]
	switch r.kind {
	case "basic+inline", "two headers":
		return "" // credentials given twice are refused, whatever they are
	}
	switch r.db {
	case "nosuchdb", "twice":
		return "" // no such database (the backend's 3D000); ?db= twice is refused
	}
	if r.kind == "none" {
		return "eve" // http.default_user, under its trust rule
	}
	switch r.user {
	case "eve":
		// trust: a Basic or inline name is taken, its password ignored;
		// a token names its user only once verified.
		if r.kind == "bearer" && r.secret != "own" {
			return ""
		}
		return "eve"
	case "erin":
		return ""
	case "carol":
		// jwt: tokens only.
		if r.kind == "bearer" && r.secret == "own" {
			return "carol"
		}
		return ""
	}
	if r.user == "alice" && r.db == "app_prod" {
		return ""
	}
	// password: a password, or pgwarden's own token (bob has no secret).
	switch r.kind {
	case "bearer":
		if known && r.secret == "own" && m.secrets[r.user] != "" {
			return r.user
		}
		return ""
	default:
		if known && r.pwKind == "right" {
			return r.user
		}
		return ""
	}
}

// send makes the request and returns its status and, on 200, the
// current_user it ran as.
func (r httpLoginRequest) send(client *http.Client, base string) (int, string, string, error) {
	body := map[string]any{"stmt": "SELECT current_user"}
	if r.kind == "inline" || r.kind == "basic+inline" {
		body["credentials"] = map[string]any{"user": r.user, "password": r.pw}
	}
	url := base + "/_sql"
	switch r.db {
	case "":
	case "twice":
		url += "?db=postgres&db=app_prod"
	default:
		url += "?db=" + r.db
	}
	status, raw, err := postSQL(context.Background(), client, url, body, func(req *http.Request) {
		switch r.kind {
		case "basic", "basic+inline":
			req.SetBasicAuth(r.user, r.pw)
		case "bearer":
			req.Header.Set("Authorization", "Bearer "+r.token)
		case "two headers":
			req.SetBasicAuth(r.user, r.pw)
			req.Header.Add("Authorization", "Bearer "+r.token)
		}
	})
	if err != nil {
		return 0, "", "", err
	}
	if status != 200 {
		return status, "", string(raw), nil
	}
	var out struct {
		Rows [][]string `json:"rows"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Rows) != 1 || len(out.Rows[0]) != 1 {
		return status, "", string(raw), fmt.Errorf("answer %s: %v", raw, err)
	}
	return 200, out.Rows[0][0], string(raw), nil
}

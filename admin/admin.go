// Package admin is the language of pgwarden's admin console: SHOW, RELOAD,
// CREATE/ALTER/DROP USER, CREATE TOKEN and KILL, parsed and run against an
// Env the server provides, with results handed to an Output. It knows
// nothing of the wire protocol: package pgwire reads the queries and turns
// results into RowDescription, DataRow and CommandComplete.
package admin

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/hba"
	"github.com/pgwarden/pgwarden/internal/ascii"
	"github.com/pgwarden/pgwarden/metrics"
	"github.com/pgwarden/pgwarden/snapshot"
)

// Env is what the admin console acts on: the server's state and sessions.
type Env interface {
	Snapshot() *snapshot.Snapshot
	// UpdateUsers changes the users file and puts the change in force,
	// all or nothing.
	UpdateUsers(change func([]*authcore.User) ([]*authcore.User, error)) error
	Reload() error
	Clients() [][]string
	Kill(id uint64) bool
	// EndSessionsOf ends the named user's sessions (other than the
	// console's own).
	EndSessionsOf(user string)
	Samples() []metrics.Sample
	Pools() backend.Stats
	Version() string
	// PeerReachable says whether a peer's Postgres listener accepts a
	// connection now.
	PeerReachable(address string) bool
}

// Output receives a command's result.
type Output interface {
	Rows(tag string, cols []string, rows [][]string)
	Done(tag string)
}

// Error is an error the client is shown as it is: its SQLSTATE and message.
// Any other error Run returns is internal, and its text is for the log.
type Error struct{ Code, Msg string }

func (e *Error) Error() string { return e.Msg }

// syntaxError is 42601.
const syntaxError = "42601"

// featureNotSupported is 0A000.
const featureNotSupported = "0A000"

func syntaxErr(format string, args ...any) error {
	return &Error{Code: syntaxError, Msg: fmt.Sprintf(format, args...)}
}

type console struct {
	env Env
	out Output
}

// Verb names a command for the log (SHOW USERS, CREATE TOKEN ...), without
// its arguments, which may hold a password.
func Verb(q string) string {
	t, err := command(q)
	if err != nil {
		return "?"
	}
	return t.verb()
}

// Run parses and runs one command line.
func Run(q string, env Env, out Output) error {
	t, err := command(q)
	if err != nil {
		return err
	}
	return (&console{env: env, out: out}).dispatch(t)
}

func (a *console) dispatch(t tokens) error {
	if len(t) > 2 && t[0].kw("SHOW") && slices.ContainsFunc(commandWords["SHOW"], t[1].kw) {
		// SHOW USERS WHERE name = 'x' answered every user, as if the
		// filter had been read.
		return syntaxErr("usage: SHOW %s (it takes nothing after it)", strings.ToUpper(t[1].text))
	}
	snap := a.env.Snapshot()
	switch {
	case t.is("SHOW", "USERS"):
		var rows [][]string
		for _, u := range snap.Users.All() {
			kind := ""
			if u.Hash() != nil {
				kind = u.Hash().Kind()
			}
			until := ""
			if u.ValidUntil != nil {
				until = u.ValidUntil.UTC().Format(time.RFC3339)
			}
			jwt := ""
			if u.JWT != nil {
				jwt = u.JWT.Iss + " " + u.JWT.Username
			}
			rows = append(rows, []string{u.Name, strings.Join(u.Roles, ","), u.BackendRole(), kind, strconv.FormatBool(u.Secret != ""), until, strconv.FormatBool(u.Disabled), jwt})
		}
		a.out.Rows("SHOW", []string{"name", "roles", "backend_user", "password", "token_secret", "valid_until", "disabled", "jwt"}, rows)
	case t.is("SHOW", "HBA"):
		var rows [][]string
		for _, r := range snap.Rules {
			rows = append(rows, r.Row())
		}
		a.out.Rows("SHOW", hba.Columns, rows)
	case t.is("SHOW", "CLIENTS"):
		a.out.Rows("SHOW", []string{"id", "protocol", "user", "database", "address", "method", "tls", "connected_since"}, a.env.Clients())
	case t.is("SHOW", "STATS"):
		var rows [][]string
		for _, s := range a.env.Samples() {
			rows = append(rows, []string{s.Name, s.Labels, strconv.FormatFloat(s.Value, 'f', -1, 64)})
		}
		a.out.Rows("SHOW", []string{"metric", "labels", "value"}, rows)
	case t.is("SHOW", "CONFIG"):
		rows, err := configRows(snap.Config)
		if err != nil {
			return err
		}
		a.out.Rows("SHOW", []string{"key", "value"}, rows)
	case t.is("SHOW", "PASSWORD_ENCRYPTION") && len(t) == 2:
		// Asked by libpq's PQencryptPasswordConn, so by psql's \password,
		// before it sends ALTER USER with a verifier it made itself.
		a.out.Rows("SHOW", []string{"password_encryption"}, [][]string{{"scram-sha-256"}})
	case t.is("SHOW", "VERSION"):
		a.out.Rows("SHOW", []string{"version"}, [][]string{{"pgwarden " + a.env.Version()}})
	case t.is("SHOW", "PEERS"):
		rows := [][]string{{strconv.Itoa(snap.Config.Server.PeerID), "(this instance)", "yes"}}
		for _, p := range snap.Config.Peers {
			reach := "no"
			if a.env.PeerReachable(p.Address) {
				reach = "yes"
			}
			rows = append(rows, []string{strconv.Itoa(p.ID), p.Address, reach})
		}
		a.out.Rows("SHOW", []string{"id", "address", "reachable"}, rows)
	case t.is("SHOW", "POOLS"):
		st := a.env.Pools()
		var rows [][]string
		for k, n := range st.ParkedByKey {
			rows = append(rows, []string{k.Role, k.Database, k.Host, strconv.Itoa(k.Port), strconv.Itoa(n), strings.ReplaceAll(k.Params, "\x00", " ")})
		}
		sort.Slice(rows, func(i, j int) bool { return strings.Join(rows[i], "\x00") < strings.Join(rows[j], "\x00") })
		rows = append(rows, []string{"(all)", "", "", "", strconv.Itoa(st.Parked), fmt.Sprintf("in use %d (ending %d), waiting %d, reused %d, closed %d", st.InUse, st.Ending, st.Waiting, st.Reused, st.Closed)})
		a.out.Rows("SHOW", []string{"role", "database", "host", "port", "parked", "startup_parameters"}, rows)
	case t.is("RELOAD") && len(t) == 1:
		if err := a.env.Reload(); err != nil {
			return &Error{Code: "F0000", Msg: "reload failed; the previous configuration stays in force: " + err.Error()}
		}
		a.out.Done("RELOAD")
	case t.is("CREATE", "USER"):
		return a.createUser(snap, t[2:])
	case t.is("ALTER", "USER"):
		return a.alterUser(snap, t[2:])
	case t.is("DROP", "USER"):
		if len(t) != 3 {
			return syntaxErr("usage: DROP USER name")
		}
		name, err := t[2].name()
		if err != nil {
			return err
		}
		return a.dropUser(snap, name)
	case t.is("CREATE", "TOKEN"):
		return a.createToken(snap, t[2:])
	case t.is("SET"):
		return a.set(t[1:])
	case t.is("KILL"):
		if len(t) != 2 {
			return syntaxErr("usage: KILL client_id")
		}
		id, err := strconv.ParseUint(t[1].text, 10, 64)
		if err != nil || !a.env.Kill(id) {
			return &Error{Code: "42704", Msg: fmt.Sprintf("no client %s", t[1].text)}
		}
		a.out.Done("KILL")
	default:
		// The client's own words back to it (the log says "?").
		var w []string
		for i := 0; i < len(t) && i < 2 && !t[i].str; i++ {
			w = append(w, strings.ToUpper(t[i].text))
		}
		return syntaxErr("unknown admin command %q", strings.Join(w, " "))
	}
	return nil
}

// createUser: CREATE USER name [WITH] [PASSWORD 'pw'] [SECRET 's'] [ADMIN]
func (a *console) createUser(snap *snapshot.Snapshot, t tokens) error {
	if len(t) == 0 {
		return syntaxErr("usage: CREATE USER name [WITH] [PASSWORD 'pw'] [SECRET 's'] [ADMIN]")
	}
	name, err := t[0].name()
	if err != nil {
		return err
	}
	if err := authcore.CheckUserName(name); err != nil {
		return &Error{Code: "42602", Msg: err.Error()}
	}
	u := &authcore.User{Name: name}
	opts := t[1:]
	if len(opts) > 0 && opts[0].kw("WITH") {
		opts = opts[1:]
	}
	for i := 0; i < len(opts); i++ {
		switch {
		case opts[i].kw("ADMIN"):
			u.Roles = []string{"admin"}
		case opts[i].kw("PASSWORD") && i+1 < len(opts) && opts[i+1].str:
			h, err := authcore.PasswordOrVerifier(opts[i+1].text, snap.Config.Users.PasswordMinLength, authcore.HashLimitsOf(snap.Config))
			if err != nil {
				return &Error{Code: "22023", Msg: err.Error()}
			}
			u.Password = h
			i++
		case opts[i].kw("SECRET") && i+1 < len(opts) && opts[i+1].str:
			if err := authcore.CheckSecret(opts[i+1].text); err != nil {
				return &Error{Code: "22023", Msg: err.Error()}
			}
			u.Secret = opts[i+1].text
			i++
		default:
			return syntaxErr("unexpected %q in CREATE USER", opts[i].text)
		}
	}
	err = a.env.UpdateUsers(func(list []*authcore.User) ([]*authcore.User, error) {
		for _, x := range list {
			if x.Name == u.Name {
				return nil, &Error{Code: "42710", Msg: fmt.Sprintf("user %q already exists", u.Name)}
			}
		}
		return append(list, u), nil
	})
	if err != nil {
		return err
	}
	a.out.Done("CREATE USER")
	return nil
}

// alterUser: ALTER USER name [WITH] PASSWORD 'pw'. A new password also
// rotates the user's token secret and ends their sessions. 'pw' may be a
// SCRAM-SHA-256 verifier (see authcore.PasswordOrVerifier).
func (a *console) alterUser(snap *snapshot.Snapshot, t tokens) error {
	if len(t) > 1 && t[1].kw("WITH") {
		t = append(t[:1:1], t[2:]...)
	}
	if len(t) != 3 || !t[1].kw("PASSWORD") || !t[2].str {
		return syntaxErr("usage: ALTER USER name [WITH] PASSWORD 'pw'")
	}
	name, err := t[0].name()
	if err != nil {
		return err
	}
	h, err := authcore.PasswordOrVerifier(t[2].text, snap.Config.Users.PasswordMinLength, authcore.HashLimitsOf(snap.Config))
	if err != nil {
		return &Error{Code: "22023", Msg: err.Error()}
	}
	if err := a.env.UpdateUsers(authcore.PasswordChange(name, h)); errors.Is(err, authcore.ErrNoSuchUser) {
		return &Error{Code: "42704", Msg: fmt.Sprintf("user %q does not exist", name)}
	} else if err != nil {
		return err
	}
	a.env.EndSessionsOf(name)
	a.out.Done("ALTER USER")
	return nil
}

func (a *console) dropUser(snap *snapshot.Snapshot, name string) error {
	err := a.env.UpdateUsers(func(list []*authcore.User) ([]*authcore.User, error) {
		for i, u := range list {
			if u.Name == name {
				return append(list[:i], list[i+1:]...), nil
			}
		}
		return nil, &Error{Code: "42704", Msg: fmt.Sprintf("user %q does not exist", name)}
	})
	if err != nil {
		return err
	}
	a.env.EndSessionsOf(name)
	a.out.Done("DROP USER")
	return nil
}

// createToken: CREATE TOKEN name [EXPIRE '3 months'], one row, one column.
func (a *console) createToken(snap *snapshot.Snapshot, t tokens) error {
	if len(t) != 1 && !(len(t) == 3 && t[1].kw("EXPIRE") && t[2].str) {
		return syntaxErr("usage: CREATE TOKEN name [EXPIRE '3 months']")
	}
	var ttl time.Duration
	if len(t) == 3 {
		d, err := parseInterval(t[2].text)
		if err != nil {
			return &Error{Code: "22007", Msg: err.Error()}
		}
		ttl = d
	}
	name, err := t[0].name()
	if err != nil {
		return err
	}
	var user *authcore.User
	err = a.env.UpdateUsers(func(list []*authcore.User) ([]*authcore.User, error) {
		for _, u := range list {
			if u.Name == name {
				if u.Secret == "" {
					u.Secret = authcore.NewSecret()
				}
				user = u
				return list, nil
			}
		}
		return nil, &Error{Code: "42704", Msg: fmt.Sprintf("user %q does not exist", name)}
	})
	if err != nil {
		return err
	}
	tok, _, err := authcore.IssueToken(snap.Config.Tokens, user, ttl, time.Now())
	if err != nil {
		return &Error{Code: "22023", Msg: err.Error()}
	}
	a.out.Rows("SELECT", []string{"token"}, [][]string{{tok}})
	return nil
}

// parseInterval reads '3 months', '90 days', '12h', '1 year'.
func parseInterval(s string) (time.Duration, error) {
	f := strings.Fields(strings.ToLower(s))
	if len(f) == 1 {
		d, err := config.ParseDuration(f[0])
		if err == nil && d <= 0 {
			// A zero lifetime would have issued one of the default.
			return 0, fmt.Errorf("interval %q is not a lifetime", s)
		}
		return d, err
	}
	if len(f) != 2 {
		return 0, fmt.Errorf("invalid interval %q", s)
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid interval %q", s)
	}
	units := map[string]time.Duration{"second": time.Second, "minute": time.Minute, "hour": time.Hour,
		"day": 24 * time.Hour, "week": 7 * 24 * time.Hour, "month": 30 * 24 * time.Hour, "year": 365 * 24 * time.Hour}
	u, ok := units[strings.TrimSuffix(f[1], "s")]
	if !ok {
		return 0, fmt.Errorf("invalid interval unit %q", f[1])
	}
	if int64(n) > math.MaxInt64/int64(u) {
		// The product would wrap: '300 years' came out negative, and
		// CREATE TOKEN then issued a token of the default lifetime.
		return 0, fmt.Errorf("interval %q is too long", s)
	}
	return time.Duration(n) * u, nil
}

// configRows flattens the configuration into key/value rows, secrets
// masked.
func configRows(c *config.Config) ([][]string, error) {
	var buf strings.Builder
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		return nil, err
	}
	var m map[string]any
	if _, err := toml.Decode(buf.String(), &m); err != nil {
		return nil, err
	}
	var rows [][]string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, x[k])
			}
		case []map[string]any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", prefix, i+1), e)
			}
		default:
			val := fmt.Sprint(v)
			last := prefix[strings.LastIndex(prefix, ".")+1:]
			if (strings.HasSuffix(last, "password") || strings.HasSuffix(last, "secret")) && val != "" {
				val = "********"
			} else if u, err := url.Parse(val); err == nil && u.User != nil {
				// A URL's password (an identity provider's jwks_url
				// behind basic authentication) is as secret as any.
				if _, has := u.User.Password(); has {
					val = u.Redacted()
				}
			}
			rows = append(rows, []string{prefix, val})
		}
	}
	walk("", m)
	return rows, nil
}

// token is one word or quoted string of an admin command.
type token struct {
	text   string
	str    bool // a '...' literal
	quoted bool // a "..." identifier
	sep    bool // a ; between commands
}

func (t token) kw(k string) bool { return !t.str && !t.quoted && !t.sep && ascii.EqualFold(t.text, k) }

// name reads the token as a user name the way PostgreSQL reads an
// identifier: a bare word folded to lower case (ASCII letters, as in a
// UTF-8 database), a "quoted" one exactly as written. So `DROP USER Bob`
// drops bob, as it would in PostgreSQL; before, it looked for "Bob" and a
// CREATE USER Alice made a user psql -U alice could not log in as. A
// 'string' is not a name.
func (t token) name() (string, error) {
	switch {
	case t.str:
		return "", syntaxErr("'%s' is a string: write a user name bare or in double quotes", t.text)
	case t.quoted && t.text == "":
		// As PostgreSQL's scanner: "" names nothing. Before, CREATE USER ""
		// reached the users file's check and answered "internal error".
		return "", syntaxErr(`zero-length delimited identifier at or near """"`)
	case t.quoted:
		return t.text, nil
	}
	return ascii.Lower(t.text), nil
}

type tokens []token

func (ts tokens) is(words ...string) bool {
	if len(ts) < len(words) {
		return false
	}
	for i, w := range words {
		if !ts[i].kw(w) {
			return false
		}
	}
	return len(words) > 1 || len(ts) >= 1
}

// commandWords are the words a command may start with, and the second
// words the log names after them.
var commandWords = map[string][]string{
	"SHOW":   {"USERS", "HBA", "CLIENTS", "STATS", "CONFIG", "PASSWORD_ENCRYPTION", "VERSION", "PEERS", "POOLS"},
	"RELOAD": nil,
	"CREATE": {"USER", "TOKEN"},
	"ALTER":  {"USER"},
	"DROP":   {"USER"},
	"KILL":   nil,
	"SET":    nil,
}

// driverSettings are what drivers set as they connect (pgjdbc sends SET
// extra_float_digits = 3 and SET application_name = '...'), with the
// values the console takes; "" takes any. The console keeps no session
// settings, so taking them changes nothing: it answers SET as PostgreSQL
// would, where refusing them made such a driver's connection fail.
var driverSettings = map[string][]string{
	"extra_float_digits": nil,
	"application_name":   nil,
	"client_encoding":    {"utf8", "utf-8", "unicode"},
}

// set takes SET [SESSION] name {= | TO} value for driverSettings.
func (a *console) set(t tokens) error {
	usage := syntaxErr("usage: SET name = value")
	if len(t) > 0 && t[0].kw("SESSION") {
		t = t[1:]
	}
	if len(t) == 0 || t[0].str || t[0].sep {
		return usage
	}
	bare := func(x token) bool { return !x.str && !x.quoted && !x.sep }
	name, value, inline := t[0].text, "", false
	if bare(t[0]) {
		name, value, inline = strings.Cut(t[0].text, "=")
	}
	rest := t[1:]
	switch {
	case inline && value != "": // SET a=3
		if len(rest) != 0 {
			return usage
		}
	case inline: // SET a= 3
		if len(rest) != 1 {
			return usage
		}
		value = rest[0].text
	case len(rest) == 2 && (rest[0].kw("TO") || bare(rest[0]) && rest[0].text == "="): // SET a = 3, SET a TO 3
		value = rest[1].text
	case len(rest) == 1 && bare(rest[0]) && len(rest[0].text) > 1 && rest[0].text[0] == '=': // SET a =3
		value = rest[0].text[1:]
	default:
		return usage
	}
	values, ok := driverSettings[ascii.Lower(name)]
	if !ok || (values != nil && !slices.Contains(values, ascii.Lower(value))) {
		return &Error{Code: featureNotSupported, Msg: fmt.Sprintf(
			"the admin console keeps no session settings: SET %s is not taken (only extra_float_digits, application_name and client_encoding UTF8, which drivers send as they connect)", name)}
	}
	a.out.Done("SET")
	return nil
}

// verb is what the log says a command was: its command words only, so a
// line typed by mistake (a password pasted at the prompt) is never
// logged; anything else is "?".
func (ts tokens) verb() string {
	if len(ts) == 0 {
		return "?"
	}
	first := strings.ToUpper(ts[0].text)
	seconds, ok := commandWords[first]
	if !ok || !ts[0].kw(first) {
		return "?"
	}
	if len(ts) > 1 {
		for _, w := range seconds {
			if ts[1].kw(w) {
				return first + " " + w
			}
		}
	}
	return first
}

// tokenize splits a command into words, "quoted identifiers", 'string
// literals' (a doubled quote inside is one, as in SQL) and the ; between
// commands.
// Comments, -- to the end of the line and /* */ (nested, as in
// PostgreSQL), are spaces: drivers send them (pgx's Ping is the query
// "-- ping", which PostgreSQL answers with an empty result), and so do
// scripts.
func tokenize(q string) (tokens, error) {
	var out tokens
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case strings.HasPrefix(q[i:], "--"):
			if nl := strings.IndexByte(q[i:], '\n'); nl >= 0 {
				i += nl + 1
			} else {
				i = len(q)
			}
		case strings.HasPrefix(q[i:], "/*"):
			depth, j := 1, i+2
			for ; j < len(q) && depth > 0; j++ {
				switch {
				case strings.HasPrefix(q[j:], "/*"):
					depth++
					j++
				case strings.HasPrefix(q[j:], "*/"):
					depth--
					j++
				}
			}
			if depth > 0 {
				return nil, errors.New("unterminated /* comment")
			}
			i = j
		case c == ';':
			out = append(out, token{text: ";", sep: true})
			i++
		case c == '\'' || c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(q); j++ {
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c {
						b.WriteByte(c)
						j++
						continue
					}
					break
				}
				b.WriteByte(q[j])
			}
			if j >= len(q) {
				return nil, errors.New("unterminated quoted string")
			}
			out = append(out, token{text: b.String(), str: c == '\'', quoted: c == '"'})
			i = j + 1
		default:
			j := i
			for j < len(q) && !strings.ContainsRune(" \t\n\r\f'\";", rune(q[j])) &&
				!strings.HasPrefix(q[j:], "--") && !strings.HasPrefix(q[j:], "/*") {
				j++
			}
			out = append(out, token{text: q[i:j]})
			i = j
		}
	}
	return out, nil
}

// command is the one command of a query: the tokens between the ;s that
// begin and end it. An empty query (nothing, ;s or comments) is no
// command; two commands in one query are refused, since the console
// answers each query with one result and a failure of the second would
// come after the first had changed users.
func command(q string) (tokens, error) {
	t, err := tokenize(q)
	if err != nil {
		return nil, &Error{Code: syntaxError, Msg: err.Error()}
	}
	for len(t) > 0 && t[0].sep {
		t = t[1:]
	}
	for len(t) > 0 && t[len(t)-1].sep {
		t = t[:len(t)-1]
	}
	for _, tok := range t {
		if tok.sep {
			return nil, &Error{Code: featureNotSupported, Msg: "the admin console runs one command per query: send each on its own"}
		}
	}
	return t, nil
}

// Empty reports whether q holds no command: only spaces, comments and ;s,
// which PostgreSQL answers with EmptyQueryResponse.
func Empty(q string) bool {
	t, err := command(q)
	return err == nil && len(t) == 0
}

package pgwire

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/hba"
	"github.com/pgwarden/pgwarden/snapshot"
)

// adminConsole serves server.admin_database to users holding role admin:
// the simple query protocol, answered with ordinary result sets so psql
// prints tables. Every command is authorised by that role check.
func (c *conn) adminConsole(snap *snapshot.Snapshot, res *authResult) error {
	if res.user == nil || !res.user.HasRole("admin") {
		return AdminDenied()
	}
	for _, p := range [][2]string{{"server_version", "15.0 (pgwarden)"}, {"server_encoding", "UTF8"}, {"client_encoding", "UTF8"},
		{"DateStyle", "ISO, MDY"}, {"integer_datetimes", "on"}, {"standard_conforming_strings", "on"}, {"application_name", ""}} {
		c.cc.send(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	var key [8]byte
	rand.Read(key[:])
	c.cc.send(&pgproto3.BackendKeyData{ProcessID: binary.BigEndian.Uint32(key[:4]) & 0x7fffffff, SecretKey: key[4:]})
	c.cc.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := c.cc.flush(); err != nil {
		return err
	}
	c.raw.SetDeadline(noDeadline)
	a := &admin{c: c, user: res.user.Name}
	skipToSync := false
	for {
		typ, body, err := c.cc.readMessage(64 << 10)
		if err != nil {
			return errSilentClose
		}
		switch typ {
		case 'X':
			return errSilentClose
		case 'Q':
			q, _, _ := cutNul(body)
			a.run(strings.TrimSpace(q))
			c.cc.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case 'S':
			skipToSync = false
			c.cc.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case 'P', 'B', 'D', 'E', 'C', 'H':
			if !skipToSync {
				a.fail(codeFeatureNotSupported, "the admin console speaks the simple query protocol only")
				skipToSync = true
			}
		default:
			return ProtocolViolation("unexpected message type %q on the admin console", typ)
		}
		if err := c.cc.flush(); err != nil {
			return errSilentClose
		}
	}
}

type admin struct {
	c    *conn
	user string
}

func (a *admin) fail(code, msg string) {
	a.c.cc.send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg})
}

// rows sends a result set of text columns.
func (a *admin) rows(tag string, cols []string, rows [][]string) {
	fields := make([]pgproto3.FieldDescription, len(cols))
	for i, col := range cols {
		fields[i] = pgproto3.FieldDescription{Name: []byte(col), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}
	}
	a.c.cc.send(&pgproto3.RowDescription{Fields: fields})
	for _, r := range rows {
		vals := make([][]byte, len(r))
		for i, v := range r {
			vals[i] = []byte(v)
		}
		a.c.cc.send(&pgproto3.DataRow{Values: vals})
	}
	a.c.cc.send(&pgproto3.CommandComplete{CommandTag: []byte(fmt.Sprintf("%s %d", tag, len(rows)))})
}

func (a *admin) done(tag string) {
	a.c.cc.send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
}

// run executes one command line.
func (a *admin) run(q string) {
	q = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(q), ";"))
	if q == "" {
		a.c.cc.send(&pgproto3.EmptyQueryResponse{})
		return
	}
	toks, err := tokenizeAdmin(q)
	if err != nil {
		a.fail(codeSyntaxError, err.Error())
		return
	}
	a.c.srv.log.Info("admin command", zap.String("user", a.user), zap.Uint64("client_id", a.c.id), zap.String("command", toks.verb()))
	if err := a.dispatch(toks); err != nil {
		var ae *adminError
		if errors.As(err, &ae) {
			a.fail(ae.code, ae.msg)
			return
		}
		a.fail(codeInternalError, err.Error())
	}
}

type adminError struct{ code, msg string }

func (e *adminError) Error() string { return e.msg }

func syntaxErr(format string, args ...any) error {
	return &adminError{code: codeSyntaxError, msg: fmt.Sprintf(format, args...)}
}

func (a *admin) dispatch(t adminTokens) error {
	snap := a.c.srv.state.Current()
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
		a.rows("SHOW", []string{"name", "roles", "backend_user", "password", "token_secret", "valid_until", "disabled", "jwt"}, rows)
	case t.is("SHOW", "HBA"):
		var rows [][]string
		for _, r := range snap.Rules {
			rows = append(rows, r.Row())
		}
		a.rows("SHOW", hba.Columns, rows)
	case t.is("SHOW", "CLIENTS"):
		a.rows("SHOW", []string{"id", "protocol", "user", "database", "address", "method", "tls", "connected_since"}, a.c.srv.clients())
	case t.is("SHOW", "STATS"):
		var rows [][]string
		if m := a.c.srv.metrics; m != nil {
			for _, s := range m.Samples() {
				rows = append(rows, []string{s.Name, s.Labels, strconv.FormatFloat(s.Value, 'f', -1, 64)})
			}
		}
		a.rows("SHOW", []string{"metric", "labels", "value"}, rows)
	case t.is("SHOW", "CONFIG"):
		rows, err := configRows(snap.Config)
		if err != nil {
			return err
		}
		a.rows("SHOW", []string{"key", "value"}, rows)
	case t.is("SHOW", "VERSION"):
		a.rows("SHOW", []string{"version"}, [][]string{{"pgwarden " + a.c.srv.version}})
	case t.is("SHOW", "POOLS"):
		st := a.c.srv.pool.Stats()
		var rows [][]string
		for k, n := range st.ParkedByKey {
			rows = append(rows, []string{k.Role, k.Database, k.Host, strconv.Itoa(k.Port), strconv.Itoa(n), strings.ReplaceAll(k.Params, "\x00", " ")})
		}
		sort.Slice(rows, func(i, j int) bool { return strings.Join(rows[i], "\x00") < strings.Join(rows[j], "\x00") })
		rows = append(rows, []string{"(all)", "", "", "", strconv.Itoa(st.Parked), fmt.Sprintf("in use %d, reused %d, closed %d", st.InUse, st.Reused, st.Closed)})
		a.rows("SHOW", []string{"role", "database", "host", "port", "parked", "startup_parameters"}, rows)
	case t.is("RELOAD") && len(t) == 1:
		if err := a.c.srv.reload(); err != nil {
			return &adminError{code: "F0000", msg: "reload failed; the previous configuration stays in force: " + err.Error()}
		}
		a.done("RELOAD")
	case t.is("CREATE", "USER"):
		return a.createUser(snap, t[2:])
	case t.is("ALTER", "USER"):
		return a.alterUser(snap, t[2:])
	case t.is("DROP", "USER"):
		if len(t) != 3 {
			return syntaxErr("usage: DROP USER name")
		}
		return a.dropUser(snap, t[2].text)
	case t.is("CREATE", "TOKEN"):
		return a.createToken(snap, t[2:])
	case t.is("KILL"):
		if len(t) != 2 {
			return syntaxErr("usage: KILL client_id")
		}
		id, err := strconv.ParseUint(t[1].text, 10, 64)
		if err != nil || !a.c.srv.kill(id) {
			return &adminError{code: "42704", msg: fmt.Sprintf("no client %s", t[1].text)}
		}
		a.done("KILL")
	default:
		return syntaxErr("unknown admin command %q", t.verb())
	}
	return nil
}

// createUser: CREATE USER name [WITH] [PASSWORD 'pw'] [SECRET 's'] [ADMIN]
func (a *admin) createUser(snap *snapshot.Snapshot, t adminTokens) error {
	if len(t) == 0 {
		return syntaxErr("usage: CREATE USER name [WITH] [PASSWORD 'pw'] [SECRET 's'] [ADMIN]")
	}
	u := &authcore.User{Name: t[0].text}
	opts := t[1:]
	if len(opts) > 0 && opts[0].kw("WITH") {
		opts = opts[1:]
	}
	for i := 0; i < len(opts); i++ {
		switch {
		case opts[i].kw("ADMIN"):
			u.Roles = []string{"admin"}
		case opts[i].kw("PASSWORD") && i+1 < len(opts) && opts[i+1].str:
			if err := authcore.CheckPasswordPolicy(opts[i+1].text, snap.Config.Users.PasswordMinLength); err != nil {
				return &adminError{code: "22023", msg: err.Error()}
			}
			h, err := authcore.HashPassword(authcore.AlgoSCRAM, opts[i+1].text)
			if err != nil {
				return err
			}
			u.Password = h
			i++
		case opts[i].kw("SECRET") && i+1 < len(opts) && opts[i+1].str:
			u.Secret = opts[i+1].text
			i++
		default:
			return syntaxErr("unexpected %q in CREATE USER", opts[i].text)
		}
	}
	err := a.updateUsers(snap, func(list []*authcore.User) ([]*authcore.User, error) {
		for _, x := range list {
			if x.Name == u.Name {
				return nil, &adminError{code: "42710", msg: fmt.Sprintf("user %q already exists", u.Name)}
			}
		}
		return append(list, u), nil
	})
	if err != nil {
		return err
	}
	a.done("CREATE USER")
	return nil
}

// alterUser: ALTER USER name [WITH] PASSWORD 'pw'. A new password also
// rotates the user's token secret and ends their sessions.
func (a *admin) alterUser(snap *snapshot.Snapshot, t adminTokens) error {
	if len(t) > 1 && t[1].kw("WITH") {
		t = append(t[:1:1], t[2:]...)
	}
	if len(t) != 3 || !t[1].kw("PASSWORD") || !t[2].str {
		return syntaxErr("usage: ALTER USER name [WITH] PASSWORD 'pw'")
	}
	name := t[0].text
	if err := authcore.CheckPasswordPolicy(t[2].text, snap.Config.Users.PasswordMinLength); err != nil {
		return &adminError{code: "22023", msg: err.Error()}
	}
	h, err := authcore.HashPassword(authcore.AlgoSCRAM, t[2].text)
	if err != nil {
		return err
	}
	if _, err := a.c.srv.state.UpdateUsers(authcore.PasswordChange(name, h)); errors.Is(err, authcore.ErrNoSuchUser) {
		return &adminError{code: "42704", msg: fmt.Sprintf("user %q does not exist", name)}
	} else if err != nil {
		return err
	}
	a.c.srv.killUser(name, a.c)
	a.done("ALTER USER")
	return nil
}

func (a *admin) dropUser(snap *snapshot.Snapshot, name string) error {
	err := a.updateUsers(snap, func(list []*authcore.User) ([]*authcore.User, error) {
		for i, u := range list {
			if u.Name == name {
				return append(list[:i], list[i+1:]...), nil
			}
		}
		return nil, &adminError{code: "42704", msg: fmt.Sprintf("user %q does not exist", name)}
	})
	if err != nil {
		return err
	}
	a.c.srv.killUser(name, a.c)
	a.done("DROP USER")
	return nil
}

// createToken: CREATE TOKEN name [EXPIRE '3 months'], one row, one column.
func (a *admin) createToken(snap *snapshot.Snapshot, t adminTokens) error {
	if len(t) != 1 && !(len(t) == 3 && t[1].kw("EXPIRE") && t[2].str) {
		return syntaxErr("usage: CREATE TOKEN name [EXPIRE '3 months']")
	}
	var ttl time.Duration
	if len(t) == 3 {
		d, err := parseInterval(t[2].text)
		if err != nil {
			return &adminError{code: "22007", msg: err.Error()}
		}
		ttl = d
	}
	name := t[0].text
	var user *authcore.User
	err := a.updateUsers(snap, func(list []*authcore.User) ([]*authcore.User, error) {
		for _, u := range list {
			if u.Name == name {
				if u.Secret == "" {
					u.Secret = authcore.NewSecret()
				}
				user = u
				return list, nil
			}
		}
		return nil, &adminError{code: "42704", msg: fmt.Sprintf("user %q does not exist", name)}
	})
	if err != nil {
		return err
	}
	tok, _, err := authcore.IssueToken(snap.Config.Tokens, user, ttl, time.Now())
	if err != nil {
		return &adminError{code: "22023", msg: err.Error()}
	}
	a.rows("SELECT", []string{"token"}, [][]string{{tok}})
	return nil
}

// parseInterval reads '3 months', '90 days', '12h', '1 year'.
func parseInterval(s string) (time.Duration, error) {
	f := strings.Fields(strings.ToLower(s))
	if len(f) == 1 {
		return config.ParseDuration(f[0])
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
			if (last == "password" || last == "secret") && val != "" {
				val = "********"
			}
			rows = append(rows, []string{prefix, val})
		}
	}
	walk("", m)
	return rows, nil
}

// adminToken is one word or quoted string of an admin command.
type adminToken struct {
	text string
	str  bool // a '...' literal
}

func (t adminToken) kw(k string) bool { return !t.str && strings.EqualFold(t.text, k) }

type adminTokens []adminToken

func (ts adminTokens) is(words ...string) bool {
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

func (ts adminTokens) verb() string {
	var w []string
	for i := 0; i < len(ts) && i < 2 && !ts[i].str; i++ {
		w = append(w, strings.ToUpper(ts[i].text))
	}
	return strings.Join(w, " ")
}

// tokenizeAdmin splits a command into words, "quoted identifiers" and
// 'string literals' (” inside is a quote, as in SQL).
func tokenizeAdmin(q string) (adminTokens, error) {
	var out adminTokens
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
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
			out = append(out, adminToken{text: b.String(), str: c == '\''})
			i = j + 1
		default:
			j := i
			for j < len(q) && q[j] != ' ' && q[j] != '\t' && q[j] != '\n' && q[j] != '\r' && q[j] != '\'' && q[j] != '"' {
				j++
			}
			out = append(out, adminToken{text: q[i:j]})
			i = j
		}
	}
	return out, nil
}

// updateUsers changes the users file through the locked, atomic writer and
// puts the change in force, all or nothing (snapshot.Holder.UpdateUsers):
// the change is in force when the command answers, or nothing changed.
func (a *admin) updateUsers(_ *snapshot.Snapshot, change func([]*authcore.User) ([]*authcore.User, error)) error {
	_, err := a.c.srv.state.UpdateUsers(change)
	return err
}

package pgwire

import "github.com/pgwarden/pgwarden/backend"

// keptStateDetector watches the SQL a client sends (Query and Parse
// bodies, fed in pieces as they pass through the relay) for what may leave
// session state that no reset removes, so that the backend is closed
// rather than handed to another client:
//
//   - a custom setting (a name with a dot, like myapp.tenant), made by a
//     call of set_config or by SET or RESET followed by a dotted name.
//     PostgreSQL keeps a placeholder for it for the rest of the session,
//     and neither DISCARD ALL nor RESET ALL removes it: a later
//     current_setting('myapp.tenant', true) answers an empty string, not
//     NULL. Nor can SQL list placeholders (pg_settings hides them).
//   - a dblink connection (dblink_connect, dblink_connect_u): dblink keeps
//     it, named or unnamed, open and logged in as whoever the client named
//     until the session ends; the next client of the backend could run
//     queries on it.
//   - a temporary replication slot (pg_create_physical_replication_slot or
//     pg_create_logical_replication_slot with temporary true, or a copy of
//     a slot made temporary): it lives until the session ends, holding
//     back WAL for as long as the backend stays parked, and the next
//     client finds it as its own session's. Any name with
//     "replication_slot" counts (the pg_replication_slots view too).
//   - a session replication origin (pg_replication_origin_session_setup):
//     every change the next client makes would carry the origin, and
//     logical replication that filters by origin would leave it out.
//     Any name with "origin_sess" counts.
//
// It errs on the side of finding: a match only costs the reuse of that
// backend. So it does not parse SQL; it finds the function names anywhere
// (also in a string literal), reads every SET and RESET (also one inside a
// string literal) as the start of a setting name that runs to the next TO
// or punctuation mark ('=', ';', '(', the quote of a string) and finds a
// dot anywhere in that stretch, also inside a quoted name or between
// spaces (SET myapp . tenant); it also finds a comment in that stretch
// (which could hide where the name ends) and any Unicode-escaped name
// anywhere (U&"...", which could spell a dot or a function name without
// writing them). A call made inside a function the client calls
// (set_config in a PL/pgSQL body, a function's own SET clause) is not
// seen; the README says so.
type keptStateDetector struct {
	found bool

	// matched counts, per name of keptStateCalls, the bytes matched so
	// far, anywhere (also inside a longer name such as
	// pg_catalog.set_config); -1 once the whole name matched.
	matched [len(keptStateCalls)]int
	// amp: the previous byte was '&', so a '"' now makes a U&"..." name.
	amp bool

	// The current token: a run of name characters.
	tok    [8]byte // its first bytes, lower-cased
	tokLen int
	tokDot bool // it holds a dot
	// inName: a SET or RESET was read and the setting name it starts has
	// not ended yet; inQuote: inside a quoted identifier of that name.
	inName, inQuote bool
}

// keptStateCalls are the functions whose call leaves state behind:
// set_config's placeholders, and the names whose state no reset removes,
// which the HTTP pools look for too. Each starts with a letter it holds
// nowhere else, so a mismatch can restart the match at that letter alone
// (TestKeptStateCallsRestartAtTheirFirstLetter holds a new name to it).
var keptStateCalls = [...]string{
	"set_config",
	backend.SessionStateCalls[0],
	backend.SessionStateCalls[1],
	backend.SessionStateCalls[2],
}

// feed matches the names unrolled, and the list above takes backend's
// names one by one: these fail to compile when either number changes.
var (
	_ = [1]struct{}{}[len(keptStateCalls)-4]
	_ = [1]struct{}{}[len(backend.SessionStateCalls)-3]
)

// start begins a new message: no token continues across messages.
func (d *keptStateDetector) start() {
	d.endToken()
	d.inName, d.inQuote, d.amp = false, false, false
	d.matched = [len(keptStateCalls)]int{}
}

// feed scans the next piece of a message body.
func (d *keptStateDetector) feed(b []byte) {
	for _, c := range b {
		if d.found {
			return
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		// Unrolled: a loop over the names costs half as much again as
		// the rest of the scan.
		d.matched[0] = matchStep(d.matched[0], c, keptStateCalls[0])
		d.matched[1] = matchStep(d.matched[1], c, keptStateCalls[1])
		d.matched[2] = matchStep(d.matched[2], c, keptStateCalls[2])
		d.matched[3] = matchStep(d.matched[3], c, keptStateCalls[3])
		if d.matched[0] < 0 || d.matched[1] < 0 || d.matched[2] < 0 || d.matched[3] < 0 {
			d.found = true
		}
		if d.amp && c == '"' {
			d.found = true // U&"...": escapes may spell what the scan looks for
		}
		d.amp = c == '&'
		if d.inQuote {
			switch c {
			case '"':
				d.inQuote = false // a doubled "" reopens it at the next byte
			case '.':
				d.found = true
			}
			continue
		}
		if isNameByte(c) {
			if d.tokLen < len(d.tok) {
				d.tok[d.tokLen] = c
			}
			d.tokLen++
			d.tokDot = d.tokDot || c == '.'
			continue
		}
		d.endToken()
		if !d.inName {
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r', '\f', '\v':
		case '"':
			d.inQuote = true
		case '-', '/':
			// A comment between SET and the name could hold the '=' or
			// ';' that ends the scan.
			d.found = true
		default:
			d.inName = false
		}
	}
}

// matchStep advances a match of name by byte c from m bytes matched: the
// bytes matched after c, -1 once all of name matched.
func matchStep(m int, c byte, name string) int {
	switch {
	case m < 0:
		return m
	case c == name[m]:
		if m+1 == len(name) {
			return -1
		}
		return m + 1
	case c == name[0]:
		return 1
	}
	return 0
}

func (d *keptStateDetector) endToken() {
	if d.tokLen == 0 {
		return
	}
	var word []byte
	if d.tokLen <= len(d.tok) {
		word = d.tok[:d.tokLen]
	}
	switch {
	case d.inName:
		d.found = d.found || d.tokDot
		// SET [SESSION | LOCAL] name TO value: the value is not a name.
		d.inName = string(word) != "to"
	default:
		d.inName = string(word) == "set" || string(word) == "reset"
	}
	d.tokLen, d.tokDot = 0, false
}

// isNameByte reports whether c (lower-cased) continues an SQL name as far
// as the detector cares: letters, digits, _, $, non-ASCII, and the dot that
// joins qualified names.
func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '$' || c == '.' || c >= 0x80
}

// sqlWatch is what a reusing relay reads of the SQL a client sends (Query
// and Parse bodies): whether it may have left state no reset removes, and
// whether it is a database statement (DROP, ALTER or CREATE DATABASE)
// that needs the idle backends of some databases closed.
type sqlWatch struct {
	kept keptStateDetector
	ddl  backend.DatabaseDDLDetector
	// onDDL, when set, gets the names a database statement asks to
	// release (a copy) as soon as its message has been read.
	onDDL func(names []string)
}

// wants reports whether a message of type typ is read.
func (w *sqlWatch) wants(typ byte) bool {
	return (typ == 'Q' || typ == 'P') && (!w.kept.found || w.onDDL != nil)
}

func (w *sqlWatch) start() {
	w.kept.start()
	if w.onDDL != nil {
		w.ddl.Start()
	}
}

func (w *sqlWatch) feed(b []byte) {
	w.kept.feed(b)
	if w.onDDL != nil {
		w.ddl.Feed(b)
	}
}

// end finishes a message that was read.
func (w *sqlWatch) end() {
	w.kept.start() // ends the message's last token
	if w.onDDL != nil {
		if names := w.ddl.End(); names != nil {
			w.onDDL(append([]string(nil), names...))
		}
	}
}

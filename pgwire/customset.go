package pgwire

import "github.com/pgwarden/pgwarden/backend"

// customSettingDetector watches the SQL a client sends (Query and Parse
// bodies, fed in pieces as they pass through the relay) for what may create
// a custom setting (a name with a dot, like myapp.tenant): a call of
// set_config, or SET or RESET followed by a dotted name. PostgreSQL keeps a
// placeholder for such a setting for the rest of the session, and neither
// DISCARD ALL nor RESET ALL removes it: a later
// current_setting('myapp.tenant', true) answers an empty string, not
// NULL. Nor can SQL list placeholders (pg_settings hides them), so the relay
// looks at what the client asked for. It errs on the side of finding: a match only costs
// the reuse of that backend. So it does not parse SQL; it reads every SET
// and RESET (also one inside a string literal) as the start of a setting
// name that runs to the next TO or punctuation mark ('=', ';', '(', the
// quote of a string) and finds a dot anywhere in that stretch, also inside
// a quoted name or between spaces (SET myapp . tenant); it also finds a
// comment in that stretch (which could hide where the name ends) and any
// Unicode-escaped name anywhere (U&"...", which could spell a dot or
// set_config without writing them). A placeholder made inside a
// function the client calls (set_config in a PL/pgSQL body, a function's
// own SET clause) is not seen; the README says so.
type customSettingDetector struct {
	found bool

	// matched counts the bytes of "set_config" matched so far, anywhere
	// (also inside a longer name such as pg_catalog.set_config).
	matched int
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

const setConfig = "set_config"

// start begins a new message: no token continues across messages.
func (d *customSettingDetector) start() {
	d.endToken()
	d.inName, d.inQuote, d.amp, d.matched = false, false, false, 0
}

// feed scans the next piece of a message body.
func (d *customSettingDetector) feed(b []byte) {
	for _, c := range b {
		if d.found {
			return
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		switch {
		case c == setConfig[d.matched]:
			d.matched++
			if d.matched == len(setConfig) {
				d.found = true
			}
		case c == setConfig[0]:
			d.matched = 1
		default:
			d.matched = 0
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

func (d *customSettingDetector) endToken() {
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
// and Parse bodies): whether it may have made a custom setting, and
// whether it is a database statement (DROP, ALTER or CREATE DATABASE)
// that needs the idle backends of some databases closed.
type sqlWatch struct {
	custom customSettingDetector
	ddl    backend.DatabaseDDLDetector
	// onDDL, when set, gets the names a database statement asks to
	// release (a copy) as soon as its message has been read.
	onDDL func(names []string)
}

// wants reports whether a message of type typ is read.
func (w *sqlWatch) wants(typ byte) bool {
	return (typ == 'Q' || typ == 'P') && (!w.custom.found || w.onDDL != nil)
}

func (w *sqlWatch) start() {
	w.custom.start()
	if w.onDDL != nil {
		w.ddl.Start()
	}
}

func (w *sqlWatch) feed(b []byte) {
	w.custom.feed(b)
	if w.onDDL != nil {
		w.ddl.Feed(b)
	}
}

// end finishes a message that was read.
func (w *sqlWatch) end() {
	w.custom.start() // ends the message's last token
	if w.onDDL != nil {
		if names := w.ddl.End(); names != nil {
			w.onDDL(append([]string(nil), names...))
		}
	}
}

package pgwire

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/pgwarden/pgwarden/internal/ascii"
)

// Request codes of the untyped first packets (PostgreSQL's pqcomm.h).
const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
	protocolV3        = 3 << 16

	// maxStartupPacketLen is PostgreSQL's MAX_STARTUP_PACKET_LENGTH; nothing
	// larger is read before the client is known.
	maxStartupPacketLen = 10000
	minStartupPacketLen = 8
)

type packetKind int

const (
	kindStartup packetKind = iota
	kindSSLRequest
	kindGSSENCRequest
	kindCancel
)

// startupPacket is one decoded untyped packet.
type startupPacket struct {
	kind         packetKind
	major, minor uint16
	// params are the startup parameters in the order sent, minus the
	// protocol options (_pq_.*), which go to unknownOptions.
	params         []param
	unknownOptions []string
	cancelPID      uint32
	cancelKey      []byte
}

type param struct{ name, value string }

func (p *startupPacket) get(name string) string {
	for _, kv := range p.params {
		if kv.name == name {
			return kv.value
		}
	}
	return ""
}

// readStartupPacket reads exactly one length-prefixed untyped packet from r
// and decodes it. It reads nothing beyond the packet, so that bytes a client
// sent after an SSLRequest stay in the socket where they can be detected.
func readStartupPacket(r io.Reader) (*startupPacket, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	if hdr == [4]byte{'X', 0, 0, 0} {
		// A Terminate message ('X', length 4) where a startup packet
		// belongs: a client that gave up before its startup was sent
		// (node-postgres's connect() then end()). Its length word is
		// invalid, which PostgreSQL only logs, so the client hears
		// nothing; an ErrorResponse here would reach an error handler
		// that already left (node-postgres throws it).
		return nil, errSilentClose
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < minStartupPacketLen || n > maxStartupPacketLen {
		return nil, ProtocolViolation("invalid length of startup packet")
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return decodeStartupPacket(body)
}

// decodeStartupPacket decodes a packet body (after its length word).
func decodeStartupPacket(body []byte) (*startupPacket, error) {
	if len(body) < 4 {
		return nil, ProtocolViolation("invalid length of startup packet")
	}
	code := binary.BigEndian.Uint32(body)
	rest := body[4:]
	switch code {
	case sslRequestCode, gssEncRequestCode:
		if len(rest) != 0 {
			return nil, ProtocolViolation("invalid length of startup packet")
		}
		if code == sslRequestCode {
			return &startupPacket{kind: kindSSLRequest}, nil
		}
		return &startupPacket{kind: kindGSSENCRequest}, nil
	case cancelRequestCode:
		// Protocol 3.0 keys are 4 bytes; 3.2 allows up to 256. A bad
		// cancel request gets no answer, as in PostgreSQL: nobody waits
		// for one, and an answer would only help a prober.
		if len(rest) < 8 || len(rest) > 4+256 {
			return nil, errSilentClose
		}
		return &startupPacket{kind: kindCancel, cancelPID: binary.BigEndian.Uint32(rest), cancelKey: append([]byte(nil), rest[4:]...)}, nil
	}
	p := &startupPacket{kind: kindStartup, major: uint16(code >> 16), minor: uint16(code)}
	if p.major != 3 {
		return p, UnsupportedProtocol()
	}
	// key\0value\0 ... \0, as PostgreSQL's ProcessStartupPacket reads it.
	if len(rest) == 0 || rest[len(rest)-1] != 0 {
		return nil, ProtocolViolation("invalid startup packet layout: expected terminator as last byte")
	}
	for {
		name, after, ok := cutNul(rest)
		if !ok {
			return nil, ProtocolViolation("invalid startup packet layout: expected terminator as last byte")
		}
		if name == "" {
			if len(after) != 0 {
				return nil, ProtocolViolation("invalid startup packet layout: expected terminator as last byte")
			}
			break
		}
		value, after2, ok := cutNul(after)
		if !ok {
			return nil, ProtocolViolation("invalid startup packet layout: expected terminator as last byte")
		}
		rest = after2
		if strings.HasPrefix(name, "_pq_.") {
			p.unknownOptions = append(p.unknownOptions, name)
			continue
		}
		for _, kv := range p.params {
			if kv.name == name {
				return nil, ProtocolViolation("duplicate startup parameter %q", name)
			}
		}
		p.params = append(p.params, param{name, value})
	}
	return p, nil
}

func cutNul(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

// replicationMode is what a startup packet's replication parameter asks for.
type replicationMode int

const (
	replicationNone     replicationMode = iota
	replicationPhysical                 // a walsender without a database
	replicationLogical                  // replication=database: a walsender in a database
)

// parseReplication reads the replication startup parameter exactly as
// PostgreSQL's ProcessStartupPacket does: the literal "database" asks for
// logical replication, anything parse_bool accepts is a boolean (physical
// replication when true), and any other value is refused before
// authentication, as PostgreSQL refuses it.
func parseReplication(v string, present bool) (replicationMode, error) {
	if !present {
		return replicationNone, nil
	}
	if v == "database" {
		return replicationLogical, nil
	}
	b, ok := parseBool(v)
	if !ok {
		return replicationNone, &Error{Code: codeInvalidParameterValue,
			Message: fmt.Sprintf("invalid value for parameter %q: %q", "replication", v),
			Hint:    `Valid values are: "false", 0, "true", 1, "database".`}
	}
	if b {
		return replicationPhysical, nil
	}
	return replicationNone, nil
}

// parseBool is PostgreSQL's parse_bool (src/backend/utils/adt/bool.c):
// case-insensitive prefixes of true, false, yes and no; on and off (at
// least "of"); 1 and 0. No white space is trimmed.
func parseBool(v string) (value, ok bool) {
	prefixOf := func(word string, min int) bool {
		return len(v) >= min && len(v) <= len(word) && ascii.EqualFold(v, word[:len(v)])
	}
	switch {
	case v == "":
		return false, false
	case prefixOf("true", 1), prefixOf("yes", 1), ascii.EqualFold(v, "on"), v == "1":
		return true, true
	case prefixOf("false", 1), prefixOf("no", 1), prefixOf("off", 2), v == "0":
		return false, true
	}
	return false, false
}

// normalizeReplication rewrites the replication parameter into the one
// form PostgreSQL cannot read differently from pgwarden: "true" or
// "database", or no parameter at all for false. The backend then gets
// exactly what the HBA decision saw.
func (p *startupPacket) normalizeReplication(mode replicationMode) {
	kept := p.params[:0]
	for _, kv := range p.params {
		if kv.name != "replication" {
			kept = append(kept, kv)
			continue
		}
		switch mode {
		case replicationPhysical:
			kept = append(kept, param{"replication", "true"})
		case replicationLogical:
			kept = append(kept, param{"replication", "database"})
		}
	}
	p.params = kept
}

// has reports whether the packet carries the parameter at all.
func (p *startupPacket) has(name string) bool {
	for _, kv := range p.params {
		if kv.name == name {
			return true
		}
	}
	return false
}

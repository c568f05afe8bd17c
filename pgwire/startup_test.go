package pgwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

func packet(code uint32, rest ...string) []byte {
	body := binary.BigEndian.AppendUint32(nil, code)
	for _, s := range rest {
		body = append(append(body, s...), 0)
	}
	if len(rest) > 0 {
		body = append(body, 0)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
}

func TestStartupPacketsDecode(t *testing.T) {
	sp, err := readStartupPacket(bytes.NewReader(packet(protocolV3, "user", "alice", "database", "app", "_pq_.x", "1")))
	if err != nil {
		t.Fatal(err)
	}
	if sp.kind != kindStartup || sp.get("user") != "alice" || sp.get("database") != "app" || len(sp.unknownOptions) != 1 {
		t.Fatalf("%+v", sp)
	}
	sp, _ = readStartupPacket(bytes.NewReader(packet(sslRequestCode)))
	if sp.kind != kindSSLRequest {
		t.Fatal("SSLRequest")
	}
	c := packet(cancelRequestCode)
	c = append(c, 0, 0, 0, 7, 1, 2, 3, 4)
	binary.BigEndian.PutUint32(c, 16)
	sp, err = readStartupPacket(bytes.NewReader(c))
	if err != nil || sp.kind != kindCancel || sp.cancelPID != 7 || !bytes.Equal(sp.cancelKey, []byte{1, 2, 3, 4}) {
		t.Fatalf("cancel: %+v %v", sp, err)
	}
}

func TestBadStartupPacketsAreProtocolViolations(t *testing.T) {
	cases := map[string][]byte{
		"short":              {0, 0, 0, 4},
		"huge":               {0, 0, 0x27, 0x11},
		"no terminator":      packet(protocolV3, "user", "alice")[:17],
		"ssl with payload":   append(packet(sslRequestCode), 1),
		"duplicate":          packet(protocolV3, "user", "a", "user", "b"),
		"value without name": append(binary.BigEndian.AppendUint32([]byte{0, 0, 0, 11}, protocolV3), 'u', 0, 0),
	}
	for name, b := range cases {
		if name == "ssl with payload" || name == "no terminator" {
			binary.BigEndian.PutUint32(b, uint32(len(b)))
		}
		_, err := readStartupPacket(bytes.NewReader(b))
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != codeProtocolViolation {
			t.Errorf("%s: got %v, want 08P01", name, err)
		}
	}
	if _, err := readStartupPacket(bytes.NewReader(packet(cancelRequestCode))); err != errSilentClose {
		t.Fatalf("a short cancel request must close silently: %v", err)
	}
	if _, err := readStartupPacket(bytes.NewReader(append([]byte{'X', 0, 0, 0, 4}, packet(protocolV3, "user", "a")...))); err != errSilentClose {
		t.Fatalf("a Terminate before the startup packet must close silently: %v", err)
	}
	_, err := readStartupPacket(bytes.NewReader(packet(4 << 16)))
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != codeFeatureNotSupported {
		t.Fatalf("protocol 4: %v", err)
	}
}

// FuzzStartupPacket feeds arbitrary bytes to the first-packet decoder: it
// must never panic, and never accept a packet over the length limit.
func FuzzStartupPacket(f *testing.F) {
	f.Add(packet(protocolV3, "user", "alice", "database", "app"))
	f.Add(packet(sslRequestCode))
	f.Add(packet(gssEncRequestCode))
	f.Add(append(packet(cancelRequestCode), 0, 0, 0, 1, 1, 2, 3, 4))
	f.Add([]byte{0, 0, 0, 8, 0, 3, 0, 0})
	f.Add([]byte{'X', 0, 0, 0, 4})
	for _, v := range []string{"t", "TrU", "yes", "y", "on", "1", "database", "Database", "of", "o", "true ", "xyz", ""} {
		f.Add(packet(protocolV3, "user", "alice", "replication", v))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sp, err := readStartupPacket(bytes.NewReader(b))
		if err == nil && len(b) > maxStartupPacketLen && sp == nil {
			t.Fatal("nil packet without error")
		}
		if err != nil || sp.kind != kindStartup {
			return
		}
		// Whatever the replication value, what reaches the backend is a
		// form PostgreSQL reads exactly as the HBA decision did.
		mode, err := parseReplication(sp.get("replication"), sp.has("replication"))
		if err != nil {
			return
		}
		sp.normalizeReplication(mode)
		again, err := parseReplication(sp.get("replication"), sp.has("replication"))
		if err != nil || again != mode {
			t.Fatalf("normalized replication %q reads as %v, was %v", sp.get("replication"), again, mode)
		}
	})
}

// The replication parameter is read as PostgreSQL reads it: every form
// parse_bool accepts, "database" exactly, and nothing else.
func TestReplicationIsReadAsPostgreSQLReadsIt(t *testing.T) {
	cases := map[string]replicationMode{
		"t": replicationPhysical, "tr": replicationPhysical, "TRU": replicationPhysical, "true": replicationPhysical,
		"y": replicationPhysical, "Ye": replicationPhysical, "yes": replicationPhysical, "on": replicationPhysical,
		"ON": replicationPhysical, "1": replicationPhysical,
		"f": replicationNone, "fals": replicationNone, "n": replicationNone, "NO": replicationNone, "of": replicationNone,
		"off": replicationNone, "0": replicationNone,
		"database": replicationLogical,
	}
	for v, want := range cases {
		got, err := parseReplication(v, true)
		if err != nil || got != want {
			t.Errorf("replication=%q: %v %v, want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"", "o", "truee", "yess", "onn", "offf", "2", "true ", " true", "Database", "DATABASE", "database ", "10"} {
		_, err := parseReplication(v, true)
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != "22023" || pe.Message != fmt.Sprintf(`invalid value for parameter "replication": %q`, v) {
			t.Errorf("replication=%q: want 22023, got %v", v, err)
		}
	}
	if m, err := parseReplication("", false); m != replicationNone || err != nil {
		t.Fatal("no parameter must mean no replication")
	}
}

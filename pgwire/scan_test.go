package pgwire

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func encodeAll(t testing.TB, msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// Whatever the chunking, the scanner sees the same messages.
func TestScannerFollowsBoundariesAcrossAnyChunking(t *testing.T) {
	stream := encodeAll(t, &pgproto3.ParameterStatus{Name: "application_name", Value: "x"},
		&pgproto3.DataRow{Values: [][]byte{bytes.Repeat([]byte("v"), 70000)}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'T'})
	for _, size := range []int{1, 2, 3, 5, 7, 4096, len(stream)} {
		var types []byte
		var status byte
		s := &msgScanner{capture: func(t byte) bool { return t == 'Z' || t == 'S' },
			onMsg: func(typ byte, body []byte) {
				types = append(types, typ)
				if typ == 'Z' {
					status = body[0]
				}
			}}
		for i := 0; i < len(stream); i += size {
			end := i + size
			if end > len(stream) {
				end = len(stream)
			}
			s.feed(stream[i:end], 0)
		}
		if string(types) != "SDCZ" || status != 'T' || !s.atBoundary() {
			t.Fatalf("chunk %d: types %q status %q boundary %v", size, types, status, s.atBoundary())
		}
	}
}

func TestScannerStopsAtTerminate(t *testing.T) {
	stream := encodeAll(t, &pgproto3.Query{String: "SELECT 1"}, &pgproto3.Terminate{})
	s := &msgScanner{}
	cut := s.feed(stream, 'X')
	if cut != len(stream)-5 || !s.atBoundary() {
		t.Fatalf("cut %d of %d", cut, len(stream))
	}
	bad := &msgScanner{}
	bad.feed([]byte{'Q', 0, 0, 0, 2}, 0)
	if bad.atBoundary() {
		t.Fatal("a length under 4 was followed")
	}
}

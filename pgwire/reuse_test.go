package pgwire

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/backend"
)

// TestSimpleQueryReadsExactlyItsAnswer: however the backend's answer is cut
// into writes, simpleQuery returns its value, keeps ParameterStatus, and
// leaves whatever the backend sent after ReadyForQuery unread.
func TestSimpleQueryReadsExactlyItsAnswer(t *testing.T) {
	big := strings.Repeat("n", 9000) // larger than one look at the socket
	answer := encodeAll(t,
		&pgproto3.NoticeResponse{Severity: "NOTICE", Code: "00000", Message: big},
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("v"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("")}},
		&pgproto3.ParameterStatus{Name: "TimeZone", Value: "UTC"},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	)
	after := encodeAll(t, &pgproto3.NoticeResponse{Severity: "NOTICE", Code: "00000", Message: "later"})
	for _, cut := range []int{0, 1, 5, 100, 4096, 9010, len(answer) - 3, len(answer) - 1} {
		ours, theirs := tcpPair(t)
		s := &backend.Session{Conn: ours, Params: map[string]string{}}
		go func() {
			q := make([]byte, 512)
			theirs.Read(q)
			theirs.Write(answer[:cut])
			time.Sleep(20 * time.Millisecond)
			theirs.Write(append(append([]byte(nil), answer[cut:]...), after...))
		}()
		v, err := simpleQuery(s, "SELECT ''", 5*time.Second)
		if err != nil || v == nil || len(v) != 0 {
			t.Fatalf("cut %d: value %q, %v; want the empty string", cut, v, err)
		}
		if s.Params["TimeZone"] != "UTC" {
			t.Errorf("cut %d: ParameterStatus not kept: %v", cut, s.Params)
		}
		rest := make([]byte, len(after))
		ours.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(ours, rest); err != nil || !bytes.Equal(rest, after) {
			t.Errorf("cut %d: what came after ReadyForQuery was not left unread: %q, %v", cut, rest, err)
		}
	}
}

// TestSimpleQueryRefusesAnErrorOrATransaction: an ErrorResponse, or a
// status other than idle, is an error.
func TestSimpleQueryRefusesAnErrorOrATransaction(t *testing.T) {
	for name, answer := range map[string][]byte{
		"error": encodeAll(t, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "42601", Message: "syntax"},
			&pgproto3.ReadyForQuery{TxStatus: 'I'}),
		"in transaction": encodeAll(t, &pgproto3.CommandComplete{CommandTag: []byte("BEGIN")},
			&pgproto3.ReadyForQuery{TxStatus: 'T'}),
	} {
		ours, theirs := tcpPair(t)
		s := &backend.Session{Conn: ours, Params: map[string]string{}}
		go func() {
			q := make([]byte, 512)
			theirs.Read(q)
			theirs.Write(answer)
		}()
		if _, err := simpleQuery(s, "BEGIN", 5*time.Second); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

package pgwire

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// What a backend whose client left still owes is followed from where the
// relay stopped reading, inside a message too, to its last ReadyForQuery;
// a backend that owes nothing, waits for COPY data, or whose stream was
// lost is not waited for.
func TestAnswersOwedFollowTheBackendToItsLastReadyForQuery(t *testing.T) {
	row := encodeAll(t, &pgproto3.DataRow{Values: [][]byte{[]byte("0123456789")}})
	ready := encodeAll(t, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})

	// The relay read half a row, then stopped; two queries are owed.
	var down msgScanner
	down.feed(row[:7], 0)
	o := answersOwed(&down, 3, 1, false)
	if o == nil {
		t.Fatal("two answers owed, nothing waited for")
	}
	if o.feed(row[7:]) || o.feed(ready) {
		t.Fatal("done after the first of two answers")
	}
	if !o.feed(append(row, ready...)) {
		t.Fatal("not done after the second answer")
	}

	// A ReadyForQuery split across reads counts once it is whole.
	o = answersOwed(&msgScanner{}, 1, 0, false)
	if o.feed(ready[:len(ready)-2]) {
		t.Fatal("done before the ReadyForQuery was whole")
	}
	if !o.feed(ready[len(ready)-2:]) {
		t.Fatal("not done after the ReadyForQuery")
	}

	// A query that turns into COPY FROM STDIN waits for data that will
	// not come.
	o = answersOwed(&msgScanner{}, 1, 0, false)
	if !o.feed(encodeAll(t, &pgproto3.CopyInResponse{})) {
		t.Fatal("still waiting after CopyInResponse")
	}

	for name, got := range map[string]*owedAnswers{
		"all answered":     answersOwed(&msgScanner{}, 2, 2, false),
		"waiting for COPY": answersOwed(&msgScanner{}, 1, 0, true),
		"stream lost":      answersOwed(&msgScanner{bad: true}, 1, 0, false),
	} {
		if got != nil {
			t.Errorf("%s: waited for", name)
		}
	}
}

// A backend whose client left is read for a bounded amount: past the bound
// its statement is canceled (once), past twice the bound it is given up.
func TestAnswersOwedAreReadWithinABound(t *testing.T) {
	row := encodeAll(t, &pgproto3.DataRow{Values: [][]byte{make([]byte, 8<<10)}})
	o := answersOwed(&msgScanner{}, 1, 0, false)
	cancels := 0
	o.cancel = func() { cancels++ }
	read := 0
	for !o.feed(row) {
		read += len(row)
		if read > 3*owedReadBound {
			t.Fatal("read on past three times the bound")
		}
	}
	if cancels != 1 {
		t.Fatalf("%d cancels, want 1", cancels)
	}
	if read < 2*owedReadBound-len(row) {
		t.Fatalf("given up after %d bytes, before twice the bound", read)
	}

	// The answer that comes after the cancel ends the wait.
	o = answersOwed(&msgScanner{}, 1, 0, false)
	o.cancel = func() { cancels++ }
	for i := 0; i*len(row) <= owedReadBound; i++ {
		if o.feed(row) {
			t.Fatal("given up before the bound")
		}
	}
	if !o.feed(encodeAll(t, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "57014"}, &pgproto3.ReadyForQuery{TxStatus: 'I'})) {
		t.Fatal("the canceled statement's answer did not end the wait")
	}
}

package httpfront

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// jsonCases are values of every kind encodeValue gives.
func jsonCases(s string, f float64) []any {
	return []any{nil, true, false, s, "", int8(-5), int16(300), int32(-70000), int64(math.MinInt64), 42, uint8(200), uint16(65000), uint32(1 << 31), uint64(math.MaxUint64),
		f, 0.0, 1e21, 1e20, 1e-6, 1e-7, -2.5e-300, 123456789.125, float32(f), float32(0.1), float32(1e-6), float32(1e21), float32(9.9999994e-07), float32(1e-7), float32(3.4e38), float32(123456789), float32(-1e21), []byte(s), []byte{}, json.RawMessage("-12345.678"),
		[]any{s, int64(1), nil, []any{}, []any{1.5, "x"}}, map[string]any{s: s, "b": []any{true}, "a": map[string]any{}, "": nil}}
}

func TestRowsAreWrittenAsEncodingJSONWritesThem(t *testing.T) {
	strs := []string{"plain", "quote \" backslash \\ slash /", "<script>&amp;</script>", "\x00\x01\x1f\x7f \b\f\n\r\t",
		"héllo wörld ✓ 日本", "bad \xff utf-8 \xc3", "line\u2028sep\u2029", "\xed\xa0\x80 surrogate", "emoji 😀"}
	for _, s := range strs {
		for _, v := range jsonCases(s, 3.14159) {
			checkLikeEncodingJSON(t, v)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		got, err := appendJSON(nil, f, math.MaxInt)
		want, _ := json.Marshal(encodeFloat(f))
		if err != nil || string(got) != string(want) {
			t.Errorf("%v: got %s, want %s", f, got, want)
		}
	}
}

// checkLikeEncodingJSON: appendJSON writes what json.Marshal writes, and
// stops exactly when that is longer than its limit; a value with bytes
// that are not UTF-8, which json.Marshal would change, is refused.
func checkLikeEncodingJSON(t testing.TB, v any) {
	t.Helper()
	want, err := json.Marshal(v)
	if err != nil {
		return
	}
	got, err := appendJSON(nil, v, math.MaxInt)
	if !utf8Throughout(v) {
		if err != errNotUTF8 {
			t.Fatalf("%#v: got %s, %v; want errNotUTF8", v, got, err)
		}
		return
	}
	if err != nil || string(got) != string(want) {
		t.Fatalf("%#v:\n got %s\nwant %s", v, got, want)
	}
	if _, err := appendJSON(nil, v, len(want)); err != nil {
		t.Fatalf("%#v refused at its own length %d", v, len(want))
	}
	if _, err := appendJSON(nil, v, len(want)-1); err != errAnswerTooLarge {
		t.Fatalf("%#v at a limit one under its length %d: %v", v, len(want), err)
	}
}

// utf8Throughout says whether every string in v, keys too, is UTF-8.
func utf8Throughout(v any) bool {
	switch x := v.(type) {
	case string:
		return utf8.ValidString(x)
	case jsonText:
		return utf8.Valid(x)
	case []any:
		for _, e := range x {
			if !utf8Throughout(e) {
				return false
			}
		}
	case map[string]any:
		for k, e := range x {
			if !utf8.ValidString(k) || !utf8Throughout(e) {
				return false
			}
		}
	}
	return true
}

// FuzzResultJSON: for any text and number, rows are written byte for byte
// as encoding/json writes them, and a limit one byte under the answer's
// length refuses it; text that is not UTF-8 is refused, never replaced.
func FuzzResultJSON(f *testing.F) {
	for _, s := range []string{"x", "<&>", "\x00\xff", "\u2028", "日本", `"\`} {
		f.Add(s, uint64(0x400921f9f01b866e))
	}
	f.Fuzz(func(t *testing.T, s string, bits uint64) {
		fl := math.Float64frombits(bits)
		if math.IsNaN(fl) || math.IsInf(fl, 0) {
			fl = float64(int64(bits))
		}
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], bits)
		for _, v := range append(jsonCases(s, fl), string(b[:])) {
			checkLikeEncodingJSON(t, v)
		}
	})
}

func TestJSONValuesAreEmbeddedAsPostgreSQLWroteThem(t *testing.T) {
	for in, want := range map[string]string{
		`{"id": 9007199254740993, "f": 1.10}`: `{"id":9007199254740993,"f":1.10}`,
		`{"z": 1, "a": 2, "z": 3}`:            `{"z":1,"a":2,"z":3}`,
		"[1e400, \"<\\u0041>\"]":              `[1e400,"<\u0041>"]`,
		`not json`:                            `"not json"`,
	} {
		got, err := appendJSON(nil, jsonText(in), math.MaxInt)
		if err != nil || string(got) != want {
			t.Errorf("%s: got %s, want %s", in, got, want)
		}
	}
	if _, err := appendJSON([]byte("[["), jsonText(`{"a": 1}`), 5); err != errAnswerTooLarge {
		t.Errorf("a value past the limit: %v", err)
	}
	// json in a SQL_ASCII database holds whatever bytes were stored.
	if got, err := appendJSON(nil, jsonText("\"\xff\""), math.MaxInt); err != errNotUTF8 {
		t.Errorf("json that is not UTF-8: %q, %v", got, err)
	}
}

// A row of pg_class as /_sql reads it, 100 times: appendJSON (now) against
// json.Marshal of the rows (before), for the README's numbers.
var benchRow = []any{int64(1259), "pg_class_relname_nsp_index", "i", float32(415), []any{"postgres=arwdDxt/postgres", "=r/postgres"}}

func BenchmarkRowsAppendJSON(b *testing.B) {
	buf := make([]byte, 0, 1<<16)
	var row any = benchRow
	for b.Loop() {
		buf = buf[:0]
		for range 100 {
			buf, _ = appendJSON(buf, row, math.MaxInt32)
		}
	}
}

func BenchmarkRowsEncodingJSON(b *testing.B) {
	rows := make([][]any, 100)
	for i := range rows {
		rows[i] = benchRow
	}
	for b.Loop() {
		json.Marshal(rows)
	}
}

// A large answer its client does not read is given up after
// answerWriteTime (the connection closes and the answer's memory goes);
// a client that read its answer keeps its connection for the next request,
// which starts without the old deadline.
func TestALargeAnswerIsGivenUpWhenItsClientStopsReading(t *testing.T) {
	base, rate := answerWriteBase, answerWriteRate
	answerWriteBase, answerWriteRate = 300*time.Millisecond, 1<<30
	defer func() { answerWriteBase, answerWriteRate = base, rate }()
	big := &result{Cols: []string{"x"}, ColTypes: []string{"text"}, Rows: rowsJSON(`[["` + strings.Repeat("x", 16<<20) + `"]]`)}
	done := make(chan struct{}, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeResults(w, http.StatusOK, big, nil)
		done <- struct{}{}
	}))
	defer srv.Close()

	stalled, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	stalled.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(stalled, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the answer of a client that does not read was never given up")
	}

	// A reading client on one keep-alive connection: two answers, the
	// second asked for after the first one's deadline passed.
	client := srv.Client()
	for i := 0; i < 2; i++ {
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n < 16<<20 {
			t.Fatalf("answer %d: %d bytes, %v", i, n, err)
		}
		<-done
		time.Sleep(500 * time.Millisecond)
	}
}

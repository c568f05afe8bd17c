package pgwire

import (
	"bytes"
	"encoding/binary"
	"net"
	"reflect"
	"testing"
)

// bufConn is a net.Conn that reads from a buffer, for parsers that take a
// connection.
type bufConn struct {
	net.Conn
	r *bytes.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// FuzzTypedMessageBeforeAuth: a typed message read before authentication,
// as a password or SASL response, is refused or bounded, never a panic or a
// large allocation.
func FuzzTypedMessageBeforeAuth(f *testing.F) {
	f.Add([]byte("p\x00\x00\x00\x09secret\x00"))
	f.Add([]byte("p\x00\x00\x00\x1aSCRAM-SHA-256\x00\x00\x00\x00\x05n,,n="))
	f.Add([]byte("p\x00\x00\x00\x16SCRAM-SHA-256\x00\xff\xff\xff\xff"))
	f.Add([]byte("p\x7f\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := newClientConn(&bufConn{r: bytes.NewReader(b)})
		if pw, err := c.readPassword(); err == nil && len(pw) > maxAuthMessageLen {
			t.Fatal("oversized password accepted")
		}
		c = newClientConn(&bufConn{r: bytes.NewReader(b)})
		if _, data, err := c.readSASLInitial(); err == nil && len(data) > maxAuthMessageLen {
			t.Fatal("oversized SASL message accepted")
		}
	})
}

// FuzzPROXYHeader: the byte-exact PROXY header reader never reads past a
// header, and never panics.
func FuzzPROXYHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 10.1.2.3 127.0.0.1 5000 6432\r\n\x00\x00\x00\x08"))
	f.Add(append([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"), make([]byte, 12)...))
	f.Add([]byte("\x00\x00\x00\x08\x04\xd2\x16\x2f"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		h, pre, err := readProxyHeader(&bufConn{r: r})
		if err == nil && h == nil && len(pre) != 5 {
			t.Fatalf("no header but %d bytes to replay", len(pre))
		}
	})
}

// FuzzSQLWatch feeds the relay's SQL watch (custom settings and database
// statements) a message body whole and cut in two: both must give the same
// answer, and what a database statement asks to release stays bounded.
func FuzzSQLWatch(f *testing.F) {
	for _, s := range []string{
		"SELECT set_config('a.b', 'x', false)", "SET LOCAL app.tenant = 1", "SET search_path = x",
		"DROP DATABASE IF EXISTS \"x\"\"y\" WITH (FORCE)", "CREATE DATABASE b TEMPLATE tpl",
		"ALTER DATABASE a RENAME TO b", "drop /* c /* d */ */ database x; select 'drop database y'",
		"drop -- c\ndatabase x", "stmt\x00DROP DATABASE x\x00\x00\x01\x00\x00\x00\x22",
		"RESET myapp.x", "SET myapp . x = 1", "SET /* c */ \"my\"\"app\".x TO 1", `SET U&"a!002eb" UESCAPE '!' = 1`,
	} {
		f.Add(s, uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, sql string, cut uint16) {
		run := func(parts ...string) (bool, []string) {
			var got []string
			w := sqlWatch{onDDL: func(names []string) { got = names }}
			w.start()
			for _, p := range parts {
				w.feed([]byte(p))
			}
			w.end()
			return w.kept.found, got
		}
		at := int(cut) % (len(sql) + 1)
		found, names := run(sql)
		found2, names2 := run(sql[:at], sql[at:])
		if found != found2 || !reflect.DeepEqual(names, names2) {
			t.Fatalf("whole: %v %q; cut at %d: %v %q", found, names, at, found2, names2)
		}
		if len(names) > 16 {
			t.Fatalf("%d names", len(names))
		}
		for _, n := range names {
			if n == "" || len(n) > 63 {
				t.Fatalf("name %q", n)
			}
		}
	})
}

// FuzzMessageScanner: the relay's message scanner (the boundaries it
// follows decide when a backend can be reused and which ReadyForQuery a
// reset waits for) sees the same messages however the stream is cut into
// reads, and agrees with a plain message-by-message reading of it: types,
// captured bodies, streamed bodies, whether it ends at a boundary, and
// where a length field made no sense.
func FuzzMessageScanner(f *testing.F) {
	f.Add([]byte("Q\x00\x00\x00\x0dSELECT 1\x00X\x00\x00\x00\x04"), []byte{3, 1, 7})
	f.Add([]byte("Z\x00\x00\x00\x05IS\x00\x00\x00\x0ba\x00b\x00c\x00"), []byte{0, 1, 2})
	f.Add([]byte("d\x00\x00\x00\x03"), []byte{1})
	f.Add([]byte("T\x00\x00\x20\x05"), []byte{5})
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		type msg struct {
			typ  byte
			body string
		}
		scan := func(chunks [][]byte) (msgs []msg, streamed string, boundary, bad bool) {
			var parts []byte
			s := &msgScanner{
				capture: func(typ byte) bool { return typ != 'd' },
				onMsg:   func(typ byte, body []byte) { msgs = append(msgs, msg{typ, string(body)}) },
				stream:  func(typ byte) bool { return typ == 'd' },
				onStart: func() { parts = append(parts, '|') },
				onPart:  func(p []byte) { parts = append(parts, p...) },
			}
			for _, c := range chunks {
				if s.feed(c, 0) != -1 {
					t.Fatal("a stop offset without a stop type")
				}
			}
			return msgs, string(parts), s.atBoundary(), s.bad
		}
		// The reference: one message after another.
		var want []msg
		var wantStreamed []byte
		wantBoundary, wantBad := true, false
		for rest := stream; len(rest) > 0; {
			if len(rest) < 5 {
				wantBoundary = false
				break
			}
			l := int(binary.BigEndian.Uint32(rest[1:5])) - 4
			if l < 0 {
				wantBad, wantBoundary = true, false
				break
			}
			typ := rest[0]
			rest = rest[5:]
			if typ == 'd' {
				wantStreamed = append(wantStreamed, '|')
			}
			n := min(l, len(rest))
			if typ == 'd' {
				wantStreamed = append(wantStreamed, rest[:n]...)
			}
			if n < l {
				wantBoundary = false
				break
			}
			body := ""
			if typ != 'd' && l <= maxCapturedBody {
				body = string(rest[:l])
			}
			want = append(want, msg{typ, body})
			rest = rest[l:]
		}
		var chunks [][]byte
		rest := stream
		for _, c := range cuts {
			n := min(int(c), len(rest))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		chunks = append(chunks, rest)
		for _, in := range [][][]byte{{stream}, chunks} {
			msgs, streamed, boundary, bad := scan(in)
			if len(msgs) == 0 {
				msgs = nil
			}
			if len(want) == 0 {
				want = nil
			}
			if !reflect.DeepEqual(msgs, want) || streamed != string(wantStreamed) || boundary != wantBoundary || bad != wantBad {
				t.Fatalf("%d chunks: messages %q streamed %q boundary %v bad %v; want %q %q %v %v",
					len(in), msgs, streamed, boundary, bad, want, wantStreamed, wantBoundary, wantBad)
			}
		}
	})
}

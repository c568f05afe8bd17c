package pgwire

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recordSizes reads a TLS stream and notes the length of every record in
// it (the 5-byte header's last two bytes).
type recordSizes struct {
	net.Conn
	mu      sync.Mutex
	header  []byte
	skip    int
	lengths []int
}

func (r *recordSizes) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	for b := p[:n]; len(b) > 0; {
		if r.skip > 0 {
			k := min(r.skip, len(b))
			r.skip -= k
			b = b[k:]
			continue
		}
		k := min(5-len(r.header), len(b))
		r.header = append(r.header, b[:k]...)
		b = b[k:]
		if len(r.header) == 5 {
			r.skip = int(binary.BigEndian.Uint16(r.header[3:]))
			r.lengths = append(r.lengths, r.skip)
			r.header = r.header[:0]
		}
	}
	return n, err
}

// countedWrites counts the writes made to a socket.
type countedWrites struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countedWrites) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// A result larger than a TLS record reaches a TLS client in records of at
// most 8 KiB, as PostgreSQL sends them, where crypto/tls would fill 16 KiB:
// libpq's asynchronous readers (pgbench, pg_basebackup's WAL receiver,
// psycopg 3) wait for the socket with the rest of a larger record unread
// inside OpenSSL, for good when nothing else comes. The records of one
// write still leave in one system call, and arrive whole and in order.
func TestATLSClientGetsRecordsOfAtMost8KiBInOneWrite(t *testing.T) {
	server, client := tlsPair(t, nil)
	sock := server.NetConn().(*tlsSocket)
	counted := &countedWrites{Conn: sock.Conn}
	sock.Conn = counted
	sizes := &recordSizes{Conn: client.NetConn().(*splitConn).Conn}
	client.NetConn().(*splitConn).Conn = sizes
	cc := &clientConn{Conn: server}

	// Past crypto/tls's warm-up of small records: from then on it fills
	// records to 16 KiB.
	warm := bytes.Repeat([]byte("w"), 256<<10)
	want := make([]byte, 0, 2<<20)
	chunks := [][]byte{warm}
	for _, n := range []int{1, maxTLSRecord - 1, maxTLSRecord, maxTLSRecord + 1, 16 << 10, 32 << 10, 32<<10 + 7, 200 << 10} {
		chunk := make([]byte, n)
		for i := range chunk {
			chunk[i] = byte(n + i)
		}
		chunks = append(chunks, chunk)
	}
	total := 0
	for _, c := range chunks {
		want = append(want, c...)
		total += len(c)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(client, int64(total)))
		got <- b
	}()
	var writesOf32KiB int
	for _, c := range chunks {
		before := counted.writes
		if n, err := cc.Write(c); err != nil || n != len(c) {
			t.Fatalf("Write of %d bytes: %d, %v", len(c), n, err)
		}
		if len(c) == 32<<10 {
			writesOf32KiB = counted.writes - before
		}
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("the client read %d bytes, not the %d written, in order", len(b), len(want))
	}
	if writesOf32KiB != 1 {
		t.Errorf("32 KiB went out in %d socket writes, not one", writesOf32KiB)
	}
	// TLS 1.3 adds the content type byte and a 16-byte tag to a record's
	// plaintext.
	const most = maxTLSRecord + 1 + 16
	sizes.mu.Lock()
	defer sizes.mu.Unlock()
	large := 0
	for _, n := range sizes.lengths {
		if n > most {
			t.Fatalf("a record of %d bytes reached the client (at most %d)", n, most)
		}
		if n == most {
			large++
		}
	}
	if large == 0 {
		t.Fatalf("no full record among %d: the test wrote too little to tell", len(sizes.lengths))
	}
}

// A write that comes while a batch of records is gathered (crypto/tls
// answering a KeyUpdate, or its close_notify) goes out after the batch,
// in the order crypto/tls wrote them, never before.
func TestATLSSocketSendsWhatComesDuringABatchAfterIt(t *testing.T) {
	a, b := tcpPair(t)
	sock := &tlsSocket{Conn: a}
	sock.gather()
	sock.Write([]byte("first "))
	done := make(chan struct{})
	go func() {
		sock.Write([]byte("second"))
		close(done)
	}()
	<-done
	if err := sock.send(); err != nil {
		t.Fatal(err)
	}
	sock.Write([]byte(" third"))
	buf := make([]byte, len("first second third"))
	if _, err := io.ReadFull(b, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "first second third" {
		t.Fatalf("the socket sent %q", buf)
	}
}

// Closing a TLS client's connection while its records wait for a client
// that stopped reading closes it at once, as crypto/tls does when one of
// its own writes is stuck: the close_notify does not queue behind them
// (it would wait out crypto/tls's 5-second deadline for it).
func TestClosingATLSClientThatStoppedReadingDoesNotWaitForIt(t *testing.T) {
	server, _ := tlsPair(t, nil) // the client end never reads
	cc := &clientConn{Conn: server}
	chunk := make([]byte, 20<<10) // three records, sent after crypto/tls's Write
	var writes atomic.Int64
	writerDone := make(chan error, 1)
	go func() {
		for {
			if _, err := cc.Write(chunk); err != nil {
				writerDone <- err
				return
			}
			writes.Add(1)
		}
	}()
	// Until the socket buffers are full and the writer waits.
	for last := int64(-1); ; time.Sleep(100 * time.Millisecond) {
		n := writes.Load()
		if n == last {
			break
		}
		last = n
	}
	closed := make(chan error, 1)
	go func() { closed <- server.Close() }()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("Close waited for a client that does not read")
	}
	select {
	case err := <-writerDone:
		if err == nil {
			t.Fatal("the stuck write ended without an error")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the stuck write outlived the close")
	}
}

// Records gathered by one writer and records another writes meanwhile (as
// crypto/tls writes a KeyUpdate answer from the reading side) reach the
// client in the order crypto/tls numbered them: a record sent out of order
// fails the client's decryption.
func TestGatheredAndDirectTLSWritesKeepTheirOrder(t *testing.T) {
	server, client := tlsPair(t, nil)
	cc := &clientConn{Conn: server}
	const rounds = 300
	big := bytes.Repeat([]byte("g"), 20<<10)
	small := bytes.Repeat([]byte("d"), 100)
	total := rounds * (len(big) + len(small))
	read := make(chan error, 1)
	go func() {
		n, err := io.Copy(io.Discard, io.LimitReader(client, int64(total)))
		if err == nil && n != int64(total) {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			server.Close() // the writers must not wait for a reader that gave up
		}
		read <- err
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range rounds {
			if _, err := cc.Write(big); err != nil {
				return // the reader tells why
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range rounds {
			if _, err := server.Write(small); err != nil {
				return
			}
		}
	}()
	wg.Wait()
	if err := <-read; err != nil {
		t.Fatalf("the client's reading failed: %v", err)
	}
}

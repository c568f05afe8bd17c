package pgwire

import (
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/backend"
)

// BenchmarkTrackedRelayThroughput pushes DataRow traffic through the
// backend-to-client side of a tracked relay over loopback TCP.
func BenchmarkTrackedRelayThroughput(b *testing.B) {
	row, _ := (&pgproto3.DataRow{Values: [][]byte{make([]byte, 200)}}).Encode(nil)
	chunk := make([]byte, 0, 64<<10)
	for len(chunk)+len(row) <= cap(chunk) {
		chunk = append(chunk, row...)
	}
	backendSrv, backendCli := tcpPair(b)
	clientSrv, clientCli := tcpPair(b)
	t := &trackedRelay{client: newClientConn(clientSrv), backend: backendCli, session: &backend.Session{}}
	go t.run()
	go io.Copy(io.Discard, clientCli)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := backendSrv.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	backendSrv.Close()
	clientCli.Close()
}

// tcpPair is a connected loopback pair, closed when the test ends.
func tcpPair(b testing.TB) (net.Conn, net.Conn) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	s := <-ch
	b.Cleanup(func() {
		c.Close()
		if s != nil {
			s.Close()
		}
	})
	return c, s
}

// BenchmarkSQLWatch is what the relay's watch of SQL texts costs per
// Query message of pgbench's select-only transaction.
func BenchmarkSQLWatch(b *testing.B) {
	q := []byte("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;\x00")
	w := sqlWatch{onDDL: func([]string) {}}
	b.SetBytes(int64(len(q)))
	for b.Loop() {
		w.start()
		w.feed(q)
		w.end()
	}
}

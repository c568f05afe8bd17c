package pgwire

import (
	"io"
	"net"
	"time"
)

var noDeadline time.Time

// relay copies both directions until either side closes; the first to end
// closes both. Copies are plain io.Copy between the sockets, so that on Linux
// TCP to TCP goes through splice. The client's buffered reader is drained
// first: bytes the client pipelined during authentication reach the backend.
func relay(client *clientConn, backend net.Conn) (up, down int64) {
	done := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(client.Conn, backend)
		client.Close()
		backend.Close()
		done <- n
	}()
	up, _ = io.Copy(backend, client.r)
	backend.Close()
	client.Close()
	down = <-done
	return up, down
}

package integration

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Plaintext sessions run in the event loops by default; event_loop = false
// (and every TLS session) relays them on goroutines. Both relays keep the
// same guarantees, proved here on each.
func TestBothRelaysKeepEveryGuarantee(t *testing.T) {
	for _, loop := range []bool{true, false} {
		t.Run(fmt.Sprintf("event_loop=%v", loop), func(t *testing.T) {
			g := startGatewayWith(t, gwOptions{server: fmt.Sprintf("event_loop = %v", loop)}, trustRules, nil)
			ctx := context.Background()
			conn := g.connString("alice", "", "postgres")

			// Large rows both ways, a COPY in and out.
			c := g.mustConnectString(conn)
			big := strings.Repeat("x", 3<<20)
			var got string
			if err := c.QueryRow(ctx, "SELECT $1::text || 'y'", big).Scan(&got); err != nil || got != big+"y" {
				t.Fatalf("a 3 MiB value came back as %d bytes: %v", len(got), err)
			}
			if _, err := c.Exec(ctx, "CREATE TEMP TABLE t (n int, s text)"); err != nil {
				t.Fatal(err)
			}
			var in bytes.Buffer
			for i := 0; i < 20000; i++ {
				fmt.Fprintf(&in, "%d\trow %d\n", i, i)
			}
			tag, err := c.PgConn().CopyFrom(ctx, bytes.NewReader(in.Bytes()), "COPY t FROM STDIN")
			if err != nil || tag.RowsAffected() != 20000 {
				t.Fatalf("COPY FROM: %v %v", tag, err)
			}
			var out bytes.Buffer
			if _, err := c.PgConn().CopyTo(ctx, &out, "COPY t TO STDOUT"); err != nil || !bytes.Equal(out.Bytes(), in.Bytes()) {
				t.Fatalf("COPY TO gave %d bytes, want %d: %v", out.Len(), in.Len(), err)
			}

			// A cancel reaches the query and leaves the session usable.
			go func() {
				time.Sleep(300 * time.Millisecond)
				c.PgConn().CancelRequest(context.Background())
			}()
			_, err = c.Exec(ctx, "SELECT pg_sleep(30)")
			wantPgError(t, err, "57014", "canceling statement due to user request")
			if got := queryOne(t, c, "SELECT 'after cancel'"); got != "after cancel" {
				t.Fatal(got)
			}

			// The backend is reset and handed to the next client.
			if _, err := c.Exec(ctx, "DROP TABLE t"); err != nil {
				t.Fatal(err)
			}
			pid := backendPID(t, c)
			closeAndWait(c)
			c2 := g.mustConnectString(conn)
			if got := backendPID(t, c2); got != pid {
				t.Fatalf("backend not reused: %s then %s", pid, got)
			}
			closeAndWait(c2)

			// Many short sessions: no reply lost.
			lost, failed, err := shortSessions(t, conn, 200, 20)
			if lost != 0 || failed != 0 {
				t.Fatalf("of 200 sessions, %d replies were lost and %d logins failed (first error: %v)", lost, failed, err)
			}
		})
	}
}

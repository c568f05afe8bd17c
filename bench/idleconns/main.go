// Command idleconns opens N idle client connections to a PostgreSQL-speaking
// server (pgwarden, PgBouncer, PostgreSQL), holds them until stdin closes,
// then closes them; with -query each runs that query once first. It prints
// "ready N" once all are open. Loopback only, bounded in count (at most
// 5000) and time (connections time out at 30 s).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func main() {
	conn := flag.String("conn", "", "connection string (host must be 127.0.0.1, localhost or a socket folder)")
	n := flag.Int("n", 1000, "connections to open (at most 5000)")
	query := flag.String("query", "", "a query each connection runs once before it idles (a session that has been used, not only opened)")
	flag.Parse()
	if *n > 5000 {
		*n = 5000
	}
	cfg, err := pgconn.ParseConfig(*conn)
	if err != nil {
		fail(err)
	}
	if h := cfg.Host; h != "127.0.0.1" && h != "localhost" && h != "::1" && (len(h) == 0 || h[0] != '/') {
		fail(fmt.Errorf("loopback only, not %q", h))
	}
	conns := make([]*pgconn.PgConn, *n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := pgconn.ConnectConfig(ctx, cfg)
			if err == nil && *query != "" {
				_, err = c.Exec(ctx, *query).ReadAll()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			conns[i] = c
		}(i)
	}
	wg.Wait()
	if firstErr != nil {
		fail(firstErr)
	}
	fmt.Printf("ready %d\n", len(conns))
	bufio.NewReader(os.Stdin).ReadString('\n')
	for _, c := range conns {
		c.Close(context.Background())
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "idleconns:", err)
	os.Exit(2)
}

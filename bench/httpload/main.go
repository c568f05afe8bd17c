// Command httpload is a small bounded load generator for make bench: it
// posts {"stmt": "SELECT 1"} (or -stmt) to a pgwarden /_sql endpoint with C
// workers for D seconds (or runs it through pgx directly, for reference) and prints
// requests per second and latency percentiles. Loopback only.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

func main() {
	target := flag.String("url", "", "http://127.0.0.1:PORT/_sql?db=postgres")
	pgURL := flag.String("pgx", "", "instead of HTTP: a PostgreSQL connection string for pgx")
	header := flag.String("auth", "", "Authorization header value")
	randBasic := flag.String("randbasic", "", "send Basic credentials for this user with a random password each time (a guessing flood)")
	randXFF := flag.Bool("randxff", false, "send each request with a random X-Forwarded-For address in 10.0.0.0/8 (a flood from many sources, through a trusted proxy)")
	stmt := flag.String("stmt", "SELECT 1", "the statement each request runs")
	conc := flag.Int("c", 8, "concurrent workers")
	dur := flag.Duration("d", 10*time.Second, "duration (at most 5m)")
	flag.Parse()
	if *dur > 5*time.Minute {
		*dur = 5 * time.Minute
	}
	var do func(ctx context.Context) error
	switch {
	case *pgURL != "":
		pool, err := pgxpool.New(context.Background(), *pgURL+" pool_max_conns="+fmt.Sprint(*conc))
		if err != nil {
			fail(err)
		}
		defer pool.Close()
		do = func(ctx context.Context) error {
			rows, err := pool.Query(ctx, *stmt)
			if err != nil {
				return err
			}
			for rows.Next() {
				if _, err := rows.Values(); err != nil {
					rows.Close()
					return err
				}
			}
			rows.Close()
			return rows.Err()
		}
	case *target != "":
		u, err := url.Parse(*target)
		if err != nil || (u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost" && u.Hostname() != "::1") {
			fail(fmt.Errorf("loopback URLs only: %q", *target))
		}
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc}, Timeout: 30 * time.Second}
		body, err := json.Marshal(map[string]string{"stmt": *stmt})
		if err != nil {
			fail(err)
		}
		do = func(ctx context.Context) error {
			req, _ := http.NewRequestWithContext(ctx, "POST", *target, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if *header != "" {
				req.Header.Set("Authorization", *header)
			}
			if *randBasic != "" {
				var b [12]byte
				rand.Read(b[:])
				req.SetBasicAuth(*randBasic, hex.EncodeToString(b[:]))
			}
			if *randXFF {
				var b [3]byte
				rand.Read(b[:])
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", b[0], b[1], b[2]))
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 && *randBasic == "" {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		}
	default:
		fail(fmt.Errorf("give -url or -pgx"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var errs int
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < *conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for ctx.Err() == nil {
				t := time.Now()
				if err := do(ctx); err != nil {
					if ctx.Err() == nil {
						bad++
					}
					continue
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(p*float64(len(lat)-1))]
	}
	fmt.Printf("rps=%.0f p50=%s p99=%s errors=%d\n", float64(len(lat))/el.Seconds(), pct(0.5), pct(0.99), errs)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "httpload:", err)
	os.Exit(2)
}

// Command example uses pgwarden from Go: SQL over HTTP with Basic
// credentials, then with a token from POST /_token, then a Postgres wire
// connection (pgx) over TLS with SCRAM-SHA-256.
//
//	PGWARDEN_URL=http://127.0.0.1:8432 PGWARDEN_PGPORT=6432 PGWARDEN_CA=certs/ca.crt \
//	PGWARDEN_USER=alice PGWARDEN_PASSWORD=... go run ./docs/examples/go
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

// sql posts one statement to /_sql with the given Authorization header.
func sql(base, auth, stmt string, args ...any) (map[string]any, error) {
	body, _ := json.Marshal(map[string]any{"stmt": stmt, "args": args})
	req, _ := http.NewRequest("POST", base+"/_sql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%d: %v", resp.StatusCode, out["error"])
	}
	return out, nil
}

func run() error {
	base, user, pw := os.Getenv("PGWARDEN_URL"), os.Getenv("PGWARDEN_USER"), os.Getenv("PGWARDEN_PASSWORD")

	// 1. Basic credentials.
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pw)
	out, err := sql(base, req.Header.Get("Authorization"), "SELECT current_user AS who, $1::int + 1 AS answer", 41)
	if err != nil {
		return err
	}
	fmt.Println("http basic:", out["rows"])

	// 2. A token, then Bearer.
	treq, _ := http.NewRequest("POST", base+"/_token", nil)
	treq.SetBasicAuth(user, pw)
	resp, err := http.DefaultClient.Do(treq)
	if err != nil {
		return err
	}
	var tok struct {
		Token     string `json:"token"`
		ExpiresAt string `json:"expires_at"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || tok.Token == "" {
		return fmt.Errorf("no token: %d %v", resp.StatusCode, err)
	}
	out, err = sql(base, "Bearer "+tok.Token, "SELECT current_user AS who")
	if err != nil {
		return err
	}
	fmt.Println("http bearer:", out["rows"])

	// 3. The wire, TLS verified against pgwarden's CA, SCRAM-SHA-256.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dsn := fmt.Sprintf("host=localhost port=%s user=%s password=%s dbname=postgres sslmode=verify-full sslrootcert=%s",
		os.Getenv("PGWARDEN_PGPORT"), user, pw, os.Getenv("PGWARDEN_CA"))
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var who string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil {
		return err
	}
	fmt.Println("wire tls scram:", who)
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

package authcore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/config"
)

func BenchmarkCheckPasswordWarmCache(b *testing.B) {
	h, _ := HashPassword(AlgoSCRAM, "bench-password")
	us, _ := ParseUsers("u", []byte("[[user]]\nname = \"alice\"\npassword = \""+h+"\"\n"))
	a := NewAuthenticator(us, NewHashLimiter(0))
	ctx := context.Background()
	a.CheckPassword(ctx, "alice", "bench-password")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.CheckPassword(ctx, "alice", "bench-password"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckPasswordSCRAMColdHash(b *testing.B) {
	h, _ := HashPassword(AlgoSCRAM, "bench-password")
	v, _ := ParseHash(h)
	for b.Loop() {
		v.Verify("bench-password")
	}
}

func BenchmarkVerifyOwnToken(b *testing.B) {
	cfg := config.Default()
	cfg.TokensSet = true
	secret := strings.Repeat("QUJD", 11)
	us, _ := ParseUsers("u", []byte("[[user]]\nname = \"alice\"\nsecret = \""+secret+"\"\n"))
	toks, err := NewTokens(cfg, us, nil)
	if err != nil {
		b.Fatal(err)
	}
	tok, _, err := IssueToken(cfg.Tokens, us.Lookup("alice"), time.Hour, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := toks.Verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
	}
}

// A full throttle table: each new failure finds room without walking it.
func BenchmarkThrottleFailureWithAFullTable(b *testing.B) {
	th := NewThrottle(100_000, time.Hour)
	for i := range 100_000 {
		th.Failure(fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), "u", time.Second, time.Minute)
	}
	b.ResetTimer()
	for i := range b.N {
		th.Failure("192.0.2.1", fmt.Sprintf("n%d", i), time.Second, time.Minute)
	}
}

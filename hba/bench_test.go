package hba

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// BenchmarkMatch: the 50th of 50 rules matches, the common worst case.
func BenchmarkMatch(b *testing.B) {
	var conf strings.Builder
	for i := 0; i < 49; i++ {
		fmt.Fprintf(&conf, "host db%d +role%d 10.%d.0.0/16 scram-sha-256\n", i, i, i)
	}
	conf.WriteString("host all all 127.0.0.1/32 scram-sha-256\n")
	rules, err := ParseFile("bench", []byte(conf.String()), Env{})
	if err != nil {
		b.Fatal(err)
	}
	req := &Request{Protocol: ProtoPG, Addr: netip.MustParseAddr("127.0.0.1"), Database: "app", User: "alice", Roles: []string{"x"}}
	b.ReportAllocs()
	for b.Loop() {
		if rules.Match(req) == nil {
			b.Fatal("no match")
		}
	}
}

package pgwire

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/authcore"
)

// cancelSource names a source as cancelRequest does.
func cancelSource(a netip.Addr) string { return authcore.NewThrottle(1, time.Hour).Source(a.String()) }

func TestCancelGuessingIsBoundedPerSource(t *testing.T) {
	g := newCancelGuard()
	now := time.Unix(1000, 0)
	g.now = func() time.Time { return now }
	guesser := cancelSource(netip.MustParseAddr("2001:db8:1:2::1"))
	// Up to the burst, wrong keys are looked at.
	for i := range cancelGuessBurst {
		if !g.allow(guesser) {
			t.Fatalf("wrong key %d of the burst was not looked at", i+1)
		}
		if spent := g.miss(guesser); spent != (i == cancelGuessBurst-1) {
			t.Fatalf("wrong key %d: spent %v", i+1, spent)
		}
	}
	// Another address of the /64 is the same source; another /64 and an
	// IPv4 address are not.
	if g.allow(cancelSource(netip.MustParseAddr("2001:db8:1:2::ffff"))) {
		t.Fatal("another address of the guessing /64 was listened to")
	}
	for _, a := range []string{"2001:db8:1:3::1", "192.0.2.1", "::ffff:192.0.2.1"} {
		if !g.allow(cancelSource(netip.MustParseAddr(a))) {
			t.Fatalf("%s was held up by another source's guessing", a)
		}
	}
	// A source that keeps sending stays unheard: what it sends while
	// ignored is charged too.
	for range 10 {
		for range 2 * cancelGuessRate {
			if g.allow(guesser) {
				t.Fatal("a source that kept guessing was listened to")
			}
			g.miss(guesser)
		}
		now = now.Add(time.Second)
	}
	// Once it stops, it is heard again within seconds (the floor).
	now = now.Add(time.Duration(2*cancelGuessBurst+1) * time.Second / cancelGuessRate)
	if !g.allow(guesser) {
		t.Fatal("a source that stopped guessing was not heard again")
	}
}

func TestTheCancelGuardsTableIsBounded(t *testing.T) {
	g := newCancelGuard()
	for i := range cancelGuardSources + 100 {
		g.miss(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String())
	}
	if len(g.buckets) > cancelGuardSources {
		t.Fatalf("the table grew to %d sources", len(g.buckets))
	}
}

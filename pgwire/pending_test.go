package pgwire

import "testing"

func TestPendingConnsEvictTheOldestOfTheSourceHoldingTheMost(t *testing.T) {
	p := newPendingConns()
	add := func(src string) *conn {
		c := &conn{}
		p.add(c, src)
		return c
	}
	a1, a2, a3 := add("a"), add("a"), add("a")
	b1 := add("b")
	// A newcomer of the source holding the most takes no one's place.
	a4 := add("a")
	if v := p.evictFor(a4); v != nil {
		t.Fatal("a source's new connection evicted one of its own")
	}
	// Another source's newcomer takes the place of that source's oldest.
	c1 := add("c")
	if v := p.evictFor(c1); v != a1 {
		t.Fatalf("evicted %p, want the oldest of source a %p", v, a1)
	}
	if p.done(a1) {
		t.Fatal("an evicted connection was let on")
	}
	// One that authenticated is no longer a candidate.
	if !p.done(a2) {
		t.Fatal("a waiting connection was refused at authentication")
	}
	if v := p.evictFor(add("d")); v != a3 {
		t.Fatalf("evicted %p, want %p (a's oldest still waiting)", v, a3)
	}
	// Sources holding no more than the newcomer's are left alone: many
	// sources with one each gain nothing, and lose nothing.
	p = newPendingConns()
	add("x")
	add("y")
	if v := p.evictFor(add("z")); v != nil {
		t.Fatal("a source holding one was evicted for another holding one")
	}
	_ = b1
}

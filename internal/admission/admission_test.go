package admission

import "testing"

func TestPendingEvictsTheOldestOfTheSourceHoldingTheMost(t *testing.T) {
	p := New()
	var ended []*Client
	add := func(src string) *Client {
		var c *Client
		c = p.Add(src, src, func() { ended = append(ended, c) })
		return c
	}
	a1, a2, a3 := add("a"), add("a"), add("a")
	add("b")
	// A newcomer of the source holding the most takes no one's place.
	if v := p.EvictFor(add("a")); v != nil {
		t.Fatal("a source's new client evicted one of its own")
	}
	// Another source's newcomer takes the place of that source's oldest,
	// which is ended.
	if v := p.EvictFor(add("c")); v != a1 || len(ended) != 1 || ended[0] != a1 {
		t.Fatalf("evicted %p (ended %v), want the oldest of source a %p", v, ended, a1)
	}
	if p.Done(a1) {
		t.Fatal("an evicted client was let on")
	}
	// One that authenticated is no longer a candidate.
	if !p.Done(a2) {
		t.Fatal("a waiting client was refused at authentication")
	}
	if v := p.EvictFor(add("d")); v != a3 {
		t.Fatalf("evicted %p, want %p (a's oldest still waiting)", v, a3)
	}
	// Sources holding no more than the newcomer's are left alone: many
	// sources with one each gain nothing, and lose nothing.
	p = New()
	add("x")
	add("y")
	if v := p.EvictFor(add("z")); v != nil {
		t.Fatal("a source holding one was evicted for another holding one")
	}
	if !p.Done(nil) {
		t.Fatal("a client never recorded was refused")
	}
}

package logpace

import "testing"

// TestACountLetsOneLineThroughAndCountsTheRest: the first event is due; the
// ones after it within the interval are counted, not logged.
func TestACountLetsOneLineThroughAndCountsTheRest(t *testing.T) {
	var c Count
	if n, due := c.Add(); !due || n != 1 {
		t.Fatalf("first event: %d %v", n, due)
	}
	for i := 0; i < 5; i++ {
		if _, due := c.Add(); due {
			t.Fatal("a second line within the interval")
		}
	}
	if got := c.n.Load(); got != 5 {
		t.Fatalf("%d events waiting for the next line, want 5", got)
	}
	var p Pace
	if !p.Due() || p.Due() {
		t.Fatal("a pace lets exactly one line through at first")
	}
}

package backend

import (
	"strconv"
	"strings"
	"testing"
)

func TestRandomSeedsAreExactDistinctAndInSetseedsRange(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		s := randomSeed()
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < -1 || f >= 1 {
			t.Fatalf("seed %q (%v): want a number in [-1, 1)", s, err)
		}
		if strconv.FormatFloat(f, 'g', -1, 64) != s {
			t.Fatalf("seed %q does not read back as itself", s)
		}
		if seen[s] {
			t.Fatalf("seed %q drawn twice in %d draws", s, i)
		}
		seen[s] = true
	}
}

func TestTheReseedingSettingsQueryReadsWhatTheSettingsQueryReads(t *testing.T) {
	q := SettingsQueryReseeding()
	if !strings.HasPrefix(q, settingsColumns+settingsFrom+", pg_catalog.setseed(") || !strings.HasSuffix(q, ") seed"+settingsWhere) {
		t.Fatalf("unexpected query: %s", q)
	}
	if !strings.HasPrefix(ReseedQuery(), "SELECT pg_catalog.setseed(") {
		t.Fatalf("unexpected reseed: %s", ReseedQuery())
	}
}

package store

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestAThrottleEventCountsOnceAndOnlyWhenSealedWithTheKey: an event
// another instance sealed is taken once; the same payload sent again, an
// old one, one under another key, a tampered one and the unsealed form of
// earlier versions count for nothing, and a listener reads neither the
// user nor the address.
func TestAThrottleEventCountsOnceAndOnlyWhenSealedWithTheKey(t *testing.T) {
	clock := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	a := NewThrottleSeal("shared-key", "instance-a")
	b := NewThrottleSeal("shared-key", "instance-b")
	a.now, b.now = now, now
	ev := ThrottleEvent{Failure: true, Address: "192.0.2.7", User: "alice"}

	p1 := a.Seal(ev)
	if strings.Contains(p1, "alice") || strings.Contains(p1, "192.0.2.7") {
		t.Fatalf("the payload shows what it is about: %s", p1)
	}
	got, mine, err := b.Open(p1)
	if err != nil || mine || got != ev {
		t.Fatalf("a sealed event from another instance: %+v, mine %v, %v", got, mine, err)
	}
	if _, mine, err := a.Open(p1); err != nil || !mine {
		t.Fatalf("the sender's own event: mine %v, %v", mine, err)
	}
	if _, _, err := b.Open(p1); !errors.Is(err, ErrThrottleEventReplayed) {
		t.Fatalf("the same event sent again: %v", err)
	}

	// A later event of the sender still counts; an earlier one sent again
	// after it does not.
	p2 := a.Seal(ThrottleEvent{Failure: false, Address: "192.0.2.7", User: "alice"})
	p3 := a.Seal(ev)
	if _, _, err := b.Open(p3); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Open(p2); !errors.Is(err, ErrThrottleEventReplayed) {
		t.Fatalf("an older success sent after a newer event: %v", err)
	}

	// An instance that never saw the sender (started later, or its LISTEN
	// connection was down) refuses what is older than the maximum age.
	old := a.Seal(ev)
	clock = clock.Add(ThrottleEventMaxAge + time.Second)
	c := NewThrottleSeal("shared-key", "instance-c")
	c.now = now
	if _, _, err := c.Open(old); !errors.Is(err, ErrThrottleEventReplayed) {
		t.Fatalf("an event older than the maximum age: %v", err)
	}
	// So is one from further ahead than a clock may be.
	a.now = func() time.Time { return clock.Add(ThrottleEventMaxAge + time.Second) }
	if _, _, err := c.Open(a.Seal(ev)); !errors.Is(err, ErrThrottleEventReplayed) {
		t.Fatalf("an event from the future: %v", err)
	}
	a.now = now

	// Another key, a flipped bit, the unsealed JSON of earlier versions,
	// and garbage.
	other := NewThrottleSeal("another-key", "instance-x")
	other.now = now
	raw, _ := base64.RawStdEncoding.DecodeString(a.Seal(ev))
	raw[len(raw)-1] ^= 1
	for name, p := range map[string]string{
		"another key":   other.Seal(ev),
		"tampered":      base64.RawStdEncoding.EncodeToString(raw),
		"unsealed JSON": `{"i":"x","f":true,"a":"127.0.0.1","u":"alice","m":"00"}`,
		"short":         "AAAA",
		"empty":         "",
	} {
		if _, _, err := b.Open(p); !errors.Is(err, ErrThrottleEventForged) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestAThrottleSealForgetsSendersLongGone: a receiver keeps a sender's
// last number only as long as an event of that sender could still be
// fresh.
func TestAThrottleSealForgetsSendersLongGone(t *testing.T) {
	clock := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	b := NewThrottleSeal("k", "b")
	b.now = now
	for i := 0; i < 50; i++ {
		s := NewThrottleSeal("k", "sender-"+string(rune('A'+i)))
		s.now = now
		if _, _, err := b.Open(s.Seal(ThrottleEvent{Failure: true, Address: "192.0.2.1", User: "u"})); err != nil {
			t.Fatal(err)
		}
	}
	clock = clock.Add(3 * ThrottleEventMaxAge)
	late := NewThrottleSeal("k", "late")
	late.now = now
	if _, _, err := b.Open(late.Seal(ThrottleEvent{User: "u"})); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	n := len(b.last)
	b.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d senders remembered, want only the live one", n)
	}
}

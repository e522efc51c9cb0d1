package l1

import (
	"testing"
	"time"
)

func TestEntryTTLJitterRange(t *testing.T) {
	r, err := Options{TTL: time.Minute, Jitter: 0.2}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	lo, hi := time.Minute, time.Duration(0)
	var low, high int // samples in the lowest and highest tenth of the range
	for range n {
		d := r.entryTTL(0)
		if d <= 48*time.Second || d > time.Minute {
			t.Fatalf("entryTTL(0) = %v, want in (48s, 60s]", d)
		}
		lo, hi = min(lo, d), max(hi, d)
		switch {
		case d < 49200*time.Millisecond:
			low++
		case d > 58800*time.Millisecond:
			high++
		}
	}
	// Uniform: each tenth holds ~n/10; a stuck or skewed jitter would not.
	if low < n/20 || high < n/20 {
		t.Errorf("jitter not uniform: %d in the lowest tenth, %d in the highest (of %d), range [%v, %v]",
			low, high, n, lo, hi)
	}
}

func TestEntryTTLCapAndDefault(t *testing.T) {
	r, err := Options{TTL: time.Second, MaxTTL: 3 * time.Second, Jitter: NoJitter}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, want time.Duration }{
		{0, time.Second},
		{-5, time.Second},
		{2 * time.Second, 2 * time.Second},
		{time.Hour, 3 * time.Second},
	} {
		if got := r.entryTTL(tc.in); got != tc.want {
			t.Errorf("entryTTL(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	// With jitter the cap still holds: jitter only shortens.
	r.jitter = 0.5
	for range 1000 {
		if got := r.entryTTL(time.Hour); got > 3*time.Second || got <= 1500*time.Millisecond {
			t.Fatalf("entryTTL(1h) with MaxTTL 3s, jitter 0.5 = %v", got)
		}
	}
}

// TestMaxTTLServed checks the cap end to end: an entry stored with a TTL of
// an hour under MaxTTL = 150ms is served at once and not after 150ms.
func TestMaxTTLServed(t *testing.T) {
	t.Parallel()
	const maxTTL = 150 * time.Millisecond
	c := newTest[string](t, Options{MaxTTL: maxTTL})
	start := time.Now()
	if !c.Set("k", "v", 1, time.Hour) {
		t.Fatal("Set: not stored")
	}
	if v, ok := c.Get("k"); !ok || v != "v" {
		t.Fatalf("Get right after Set = %q, %v", v, ok)
	}
	// Expiry is a deadline, not an event: sleeping past it is the test.
	time.Sleep(time.Until(start.Add(maxTTL + 10*time.Millisecond)))
	if v, ok := c.Get("k"); ok {
		t.Fatalf("Get %v after Set with MaxTTL %v returned %q", time.Since(start), maxTTL, v)
	}
	// Fill and the default TTL obey the cap too.
	f := c.BeginFill("f")
	start = time.Now()
	if !c.Fill("f", f, "v", 1, 0) {
		t.Fatal("Fill: not stored")
	}
	time.Sleep(time.Until(start.Add(maxTTL + 10*time.Millisecond)))
	if _, ok := c.Get("f"); ok {
		t.Fatalf("filled entry served %v after Fill with MaxTTL %v", time.Since(start), maxTTL)
	}
}

// TestTTLServed checks a per-entry TTL below the default, with jitter: the
// entry lives at least (1-Jitter)*ttl and at most ttl.
func TestTTLServed(t *testing.T) {
	t.Parallel()
	const ttl = 200 * time.Millisecond
	c := newTest[int](t, Options{Jitter: 0.5})
	start := time.Now()
	if !c.Set("k", 1, 1, ttl) {
		t.Fatal("Set: not stored")
	}
	time.Sleep(time.Until(start.Add(ttl / 2 * 9 / 10)))
	if _, ok := c.Get("k"); !ok && time.Since(start) < ttl/2 {
		t.Fatalf("entry with ttl %v, jitter 0.5 gone after %v", ttl, time.Since(start))
	}
	time.Sleep(time.Until(start.Add(ttl + 10*time.Millisecond)))
	if _, ok := c.Get("k"); ok {
		t.Fatalf("entry with ttl %v served after %v", ttl, time.Since(start))
	}
}

package l1

import (
	"fmt"
	"testing"
)

func mustGet[V comparable](t *testing.T, c *Cache[V], key string, want V) {
	t.Helper()
	if v, ok := c.Get(key); !ok || v != want {
		t.Fatalf("Get(%q) = %v, %v; want %v, true", key, v, ok, want)
	}
}

func mustMiss[V any](t *testing.T, c *Cache[V], key string) {
	t.Helper()
	if v, ok := c.Get(key); ok {
		t.Fatalf("Get(%q) = %v, true; want a miss", key, v)
	}
}

func TestFillStoresWhenUnfenced(t *testing.T) {
	c := newTest[string](t, Options{})
	f := c.BeginFill("k")
	if !c.Fill("k", f, "v1", 2, 0) {
		t.Fatal("Fill with a fresh fence: not stored")
	}
	mustGet(t, c, "k", "v1")
	// Fills do not fence each other: a second fill with the same fence lands.
	if !c.Fill("k", f, "v2", 2, 0) {
		t.Fatal("second Fill with the same fence: not stored")
	}
	mustGet(t, c, "k", "v2")
}

func TestFillFenced(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(c *Cache[string])
		want  string // value after the refused Fill; "" = miss
	}{
		{"Invalidate", func(c *Cache[string]) { c.Invalidate("k") }, ""},
		{"Set", func(c *Cache[string]) { c.Set("k", "set", 3, 0) }, "set"},
		{"Flush", func(c *Cache[string]) { c.Flush() }, ""},
		{"SetFenced", func(c *Cache[string]) { c.SetFenced("k", c.BeginFill("k"), "sf", 2, 0) }, "sf"},
		{"ReplaceAbsent", func(c *Cache[string]) {
			c.Replace("k", "r", 1, 0, func(string) bool { return true })
		}, ""},
		{"OtherKeySameStripe", func(c *Cache[string]) { c.Invalidate(sameStripe(c, "k")) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTest[string](t, Options{})
			f := c.BeginFill("k")
			tc.write(c)
			before := c.Stats().SetsFenced
			if c.Fill("k", f, "stale", 5, 0) {
				t.Fatal("Fill after a fencing write: stored")
			}
			if got := c.Stats().SetsFenced - before; got != 1 {
				t.Errorf("SetsFenced grew by %d, want 1", got)
			}
			if tc.want == "" {
				mustMiss(t, c, "k")
			} else {
				mustGet(t, c, "k", tc.want)
			}
		})
	}
}

func TestFillForeignFence(t *testing.T) {
	c := newTest[string](t, Options{})
	if c.Fill("k", Fence{}, "v", 1, 0) {
		t.Error("Fill with the zero Fence: stored")
	}
	other := otherStripe(c, "k")
	if c.Fill("k", c.BeginFill(other), "v", 1, 0) {
		t.Errorf("Fill of k with the Fence of %q: stored", other)
	}
	mustMiss(t, c, "k")
	// A write to a key of another stripe does not fence.
	f := c.BeginFill("k")
	c.Set(other, "o", 1, 0)
	if !c.Fill("k", f, "v", 1, 0) {
		t.Error("Fill after a write to another stripe's key: not stored")
	}
}

func TestSetFencedLosesToConcurrentChange(t *testing.T) {
	c := newTest[string](t, Options{})
	c.Set("k", "old", 3, 0)
	f := c.BeginFill("k")
	c.Invalidate("k") // another node's write arrived while ours was in flight
	c.Set("k", "remote", 6, 0)
	if c.SetFenced("k", f, "ours", 4, 0) {
		t.Fatal("SetFenced after a concurrent change: stored")
	}
	// Which write is newer is unknown: the key must be gone, not "remote".
	mustMiss(t, c, "k")

	f = c.BeginFill("k")
	if !c.SetFenced("k", f, "ours", 4, 0) {
		t.Fatal("SetFenced with a valid fence: not stored")
	}
	mustGet(t, c, "k", "ours")
	// SetFenced is a write: it fences fills that began before it.
	if c.Fill("k", f, "stale", 5, 0) {
		t.Fatal("Fill with a fence older than SetFenced: stored")
	}
}

func TestReplace(t *testing.T) {
	type ver struct{ n int }
	c := newTest[*ver](t, Options{})
	newerThan := func(n int) func(*ver) bool { return func(old *ver) bool { return old.n < n } }

	if c.Replace("k", &ver{1}, 8, 0, newerThan(1)) {
		t.Fatal("Replace of an absent key: stored")
	}
	mustMiss(t, c, "k")

	c.Set("k", &ver{2}, 8, 0)
	older := c.BeginFill("k")
	if c.Replace("k", &ver{1}, 8, 0, newerThan(1)) {
		t.Fatal("Replace with an older version: stored")
	}
	if v, _ := c.Get("k"); v == nil || v.n != 2 {
		t.Fatalf("after an older Replace: %v, want version 2", v)
	}
	// The entry stays, but a fill that began before may be older still.
	if c.Fill("k", older, &ver{0}, 8, 0) {
		t.Fatal("Fill with a fence older than a kept Replace: stored")
	}
	f := c.BeginFill("k")
	if !c.Replace("k", &ver{3}, 8, 0, newerThan(3)) {
		t.Fatal("Replace with a newer version: not stored")
	}
	if v, _ := c.Get("k"); v == nil || v.n != 3 {
		t.Fatalf("after a newer Replace: %v, want version 3", v)
	}
	if c.Fill("k", f, &ver{0}, 8, 0) {
		t.Fatal("Fill with a fence older than Replace: stored")
	}
}

// sameStripe returns a key other than key in key's fence stripe.
func sameStripe[V any](c *Cache[V], key string) string {
	want, _ := c.stripeOf(key)
	for i := 0; ; i++ {
		k := fmt.Sprintf("other-%d", i)
		if i, _ := c.stripeOf(k); i == want && k != key {
			return k
		}
	}
}

// otherStripe returns a key in a fence stripe other than key's.
func otherStripe[V any](c *Cache[V], key string) string {
	want, _ := c.stripeOf(key)
	for i := 0; ; i++ {
		k := fmt.Sprintf("other-%d", i)
		if i, _ := c.stripeOf(k); i != want {
			return k
		}
	}
}

func TestBumpFencesWithoutDropping(t *testing.T) {
	c := newTest[string](t, Options{})
	c.Set("k", "v2", 2, 0)
	f := c.BeginFill("k")
	c.Bump("k")
	if v, ok := c.Get("k"); !ok || v != "v2" {
		t.Fatalf("after Bump: %q, %v; want the entry kept", v, ok)
	}
	if c.Fill("k", f, "v1", 2, 0) {
		t.Fatal("Fill with a fence older than Bump: stored")
	}
	if v, _ := c.Get("k"); v != "v2" {
		t.Fatalf("after the fenced Fill: %q", v)
	}
}

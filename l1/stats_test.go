package l1

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestStatsCounts(t *testing.T) {
	c := newTest[string](t, Options{MaxBytes: 1 << 20, ItemOverhead: 100})
	c.Set("a", "x", 10, 0) // cost 1+10+100
	c.Set("b", "y", 20, 0) // cost 1+20+100
	c.Get("a")             // hit
	c.Get("a")             // hit
	c.Get("nope")          // miss
	c.Invalidate("b")      // invalidation
	c.Get("b")             // miss
	f := c.BeginFill("a")
	c.Set("a", "z", 10, 0)       // update: sets
	c.Fill("a", f, "w", 1, 0)    // fenced
	c.Set("huge", "v", 2<<20, 0) // rejected: over budget
	c.Wait()                     // settle Ristretto's cost bookkeeping
	s := c.Stats()
	want := Stats{
		Hits: 2, Misses: 2, Sets: 3, SetsRejected: 1, SetsFenced: 1,
		Invalidations: 1, BytesUsed: 111, MaxBytes: 1 << 20, Items: 1,
	}
	if s != want {
		t.Fatalf("Stats = %+v\nwant    %+v", s, want)
	}
	c.Flush()
	s = c.Stats()
	if s.Flushes != 1 || s.Items != 0 || s.BytesUsed != 0 || s.Evictions != 0 {
		t.Fatalf("after Flush: %+v; want 1 flush, no items, no bytes, and no evictions counted", s)
	}
}

// TestBudget fills a small cache far past its budget: the bytes held never
// exceed MaxBytes, entries are evicted (counted), and an entry whose cost
// alone exceeds the budget is refused and removes the key's older value.
func TestBudget(t *testing.T) {
	const maxBytes = 64 << 10
	c := newTest[int](t, Options{MaxBytes: maxBytes, ItemOverhead: 200})
	stored := 0
	for i := range 2000 {
		if c.Set(fmt.Sprintf("key-%05d", i), i, 800, 0) { // cost 9+800+200
			stored++
		}
		if i%100 == 99 {
			c.Wait()
			if s := c.Stats(); s.BytesUsed > maxBytes || s.Items*1009 > maxBytes {
				t.Fatalf("after %d Sets: BytesUsed %d, Items %d over a %d budget", i+1, s.BytesUsed, s.Items, maxBytes)
			}
		}
	}
	s := c.Stats()
	t.Logf("2000 Sets of 1009-byte entries into %d bytes: %+v", maxBytes, s)
	if s.Items == 0 || s.Items > maxBytes/1009 {
		t.Errorf("Items = %d, want 1..%d", s.Items, maxBytes/1009)
	}
	if s.Evictions+s.SetsRejected+s.SetsDropped == 0 {
		t.Errorf("nothing evicted, rejected or dropped: %+v", s)
	}
	if uint64(stored) != s.Sets {
		t.Errorf("%d Sets returned true, Stats.Sets = %d", stored, s.Sets)
	}

	if !c.Set("big", 1, 100, 0) {
		t.Fatal("Set of a small entry: not stored")
	}
	if c.Set("big", 2, maxBytes, 0) {
		t.Fatal("Set of an entry larger than the budget: stored")
	}
	mustMiss(t, c, "big") // the older value must not survive the write
}

// TestExpirationsCounted checks that a Get of an expired entry misses, counts
// one expiration (not an eviction) and gives the entry's bytes back to the
// budget at once, on a fake clock.
func TestExpirationsCounted(t *testing.T) {
	t.Parallel()
	var now atomic.Int64
	now.Store(1)
	c := newTest[int](t, Options{Clock: now.Load, Jitter: NoJitter})
	if !c.Set("k", 1, 1, 10*time.Millisecond) {
		t.Fatal("Set: not stored")
	}
	c.Wait()
	if s := c.Stats(); s.BytesUsed == 0 || s.Items != 1 {
		t.Fatalf("after Set: %+v", s)
	}
	now.Add(int64(10*time.Millisecond) - 1)
	if v, ok := c.Get("k"); !ok || v != 1 {
		t.Fatalf("Get 1ns before expiry = %v, %v", v, ok)
	}
	now.Add(1)
	mustMiss(t, c, "k")
	if _, ok := c.Peek("k"); ok {
		t.Fatal("Peek returned an expired entry")
	}
	c.Wait()
	if s := c.Stats(); s.Expirations != 1 || s.Evictions != 0 || s.BytesUsed != 0 || s.Items != 0 {
		t.Fatalf("Stats = %+v; want 1 expiration, 0 evictions, 0 bytes, 0 items", s)
	}
}

// TestItemOverhead measures the heap each resident entry costs beyond its key
// and value, to check DefaultItemOverhead is not an underestimate by much.
func TestItemOverhead(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 1e5 entries")
	}
	const n = 100_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%07d", i)
	}
	val := new(int)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, err := New[*int](Options{MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, k := range keys {
		c.Set(k, val, 0, 0)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	items := c.Stats().Items
	// The counters (NumCounters for 1 GiB) are a fixed cost: measure them
	// with an empty cache and take them off.
	var e0, e1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&e0)
	empty, err := New[*int](Options{MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&e1)
	fixed := int64(e1.HeapAlloc) - int64(e0.HeapAlloc)
	_ = empty.Close()
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc) - fixed) / items
	t.Logf("%d items: %d B of heap per item beyond keys (already allocated) and values (shared); fixed %d B",
		items, per, fixed)
	if items < n*9/10 {
		t.Fatalf("only %d of %d items resident", items, n)
	}
	if per > 2*DefaultItemOverhead {
		t.Errorf("measured %d B per item, more than twice DefaultItemOverhead (%d)", per, DefaultItemOverhead)
	}
	runtime.KeepAlive(keys)
}

func TestPeekIsNotCounted(t *testing.T) {
	c := newTest[string](t, Options{})
	c.Set("k", "v", 1, 0)
	before := c.Stats()
	if v, ok := c.Peek("k"); !ok || v != "v" {
		t.Fatalf("Peek = %q, %v", v, ok)
	}
	if _, ok := c.Peek("absent"); ok {
		t.Fatal("Peek of an absent key found something")
	}
	after := c.Stats()
	if after.Hits != before.Hits || after.Misses != before.Misses {
		t.Fatalf("Peek counted: hits %d -> %d, misses %d -> %d", before.Hits, after.Hits, before.Misses, after.Misses)
	}
	c.Get("k")
	if got := c.Stats().Hits; got != before.Hits+1 {
		t.Fatalf("Get after Peeks: hits %d, want %d", got, before.Hits+1)
	}
}

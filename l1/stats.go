package l1

import (
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2"
)

// Stats is a snapshot of a Cache's counters. Counters only grow (Hits and
// Misses are sums over stripes read one after another, so a snapshot taken
// during Gets may be off by the Gets in flight).
type Stats struct {
	// Hits counts Gets that returned a value.
	Hits uint64
	// Misses counts Gets that returned nothing, including Gets after Close.
	Misses uint64
	// Sets counts Set, SetFenced, Fill and Replace calls that stored their
	// value (it was resident when the call returned).
	Sets uint64
	// SetsDropped counts stores Ristretto dropped because its set buffer
	// was full (contention): the value was not stored.
	SetsDropped uint64
	// SetsRejected counts stores refused by Ristretto's admission policy
	// (TinyLFU judged the new key less valuable than what it would evict),
	// stores whose cost alone exceeds MaxBytes, and stores with size < 0.
	SetsRejected uint64
	// SetsFenced counts Fill and SetFenced calls refused because the key
	// was Set, Replaced or Invalidated (or the cache Flushed) since
	// BeginFill, and Fills given a Fence of another key or the zero Fence.
	SetsFenced uint64
	// Evictions counts entries Ristretto evicted to make room.
	Evictions uint64
	// Expirations counts expired entries removed: by the Get that found one
	// expired, or evicted by Ristretto after they expired. An expired entry
	// is never returned, removed yet or not.
	Expirations uint64
	// Invalidations counts Invalidate calls.
	Invalidations uint64
	// Flushes counts Flush calls.
	Flushes uint64
	// BytesUsed is the summed cost (len(key) + size + ItemOverhead) of the
	// entries Ristretto holds, expired ones not yet cleaned up included.
	BytesUsed int64
	// MaxBytes is the budget (Options.MaxBytes).
	MaxBytes int64
	// Items is the number of live (unexpired) entries, counted by walking
	// the cache: Stats costs O(Items), about 10-20 ns per entry.
	Items int64
}

// counters are the write-path and callback counters. None of them is touched
// by Get; each sits on its own cache-line pair so that the callbacks, run on
// Ristretto's goroutine, do not slow down writers and vice versa.
type counters struct {
	sets          paddedCounter
	dropped       paddedCounter
	rejected      paddedCounter
	fenced        paddedCounter
	evictions     paddedCounter
	expirations   paddedCounter
	invalidations paddedCounter
	flushes       paddedCounter
	// clearing is set while Ristretto's Clear runs (Flush, Close): Clear
	// reports every entry it drops through OnEvict, and those are not
	// evictions.
	clearing atomic.Bool
}

type paddedCounter struct {
	atomic.Uint64
	_ [readerStripeSize - 8]byte
}

// onEvict is Ristretto's OnEvict callback. It runs on Ristretto's goroutine
// (or inside Clear): it only counts, never calls back into the cache.
// Entries carry their own expiry (slot): a victim of the eviction policy
// that had already expired counts as an expiration.
func (c *Cache[V]) onEvict(item *ristretto.Item[slot[V]]) {
	switch {
	case c.counters.clearing.Load():
	case item.Value.exp > c.Now():
		c.counters.evictions.Add(1)
	default:
		c.counters.expirations.Add(1)
	}
}

// onReject is Ristretto's OnReject callback (same rules as onEvict): the
// admission policy refused a new entry, or its cost exceeds the budget.
func (c *Cache[V]) onReject(*ristretto.Item[slot[V]]) { c.counters.rejected.Add(1) }

// Stats returns a snapshot of the counters. After Close, BytesUsed and Items
// are 0.
func (c *Cache[V]) Stats() Stats {
	hits, misses := readerTotals(c.readers)
	k := &c.counters
	s := Stats{
		Hits:          hits,
		Misses:        misses,
		Sets:          k.sets.Load(),
		SetsDropped:   k.dropped.Load(),
		SetsRejected:  k.rejected.Load(),
		SetsFenced:    k.fenced.Load(),
		Evictions:     k.evictions.Load(),
		Expirations:   k.expirations.Load(),
		Invalidations: k.invalidations.Load(),
		Flushes:       k.flushes.Load(),
		MaxBytes:      c.opts.maxBytes,
	}
	c.life.RLock()
	defer c.life.RUnlock()
	if c.closed.Load() {
		return s
	}
	s.BytesUsed = c.rc.MaxCost() - c.rc.RemainingCost()
	c.rc.IterValues(func(slot[V]) bool {
		s.Items++
		return false
	})
	return s
}

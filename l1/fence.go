package l1

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// The fill fence.
//
// A fill (read L2 or the loader after a miss, then store in L1) must not land
// after an Invalidate, SetFenced or Flush that happened while it was in flight: its
// value may predate that change. Keys hash to one of fenceStripes stripes,
// each a mutex and a generation; SetFenced, Replace and Invalidate bump
// the generation of their key's stripe, Flush bumps the global epoch.
// BeginFill records both; Fill stores only if both are unchanged, deciding
// under the stripe lock. A write to another key of the same stripe also
// fences a fill (a spurious, safe refusal; 4096 stripes make it rare).
//
// Deciding under a lock is not enough on its own, because Ristretto applies
// the Set of a new key asynchronously: SetWithTTL queues an Item on setBuf and
// returns; Ristretto's goroutine adds it to the store later. Del removes from
// the store at once and queues a delete behind it. So, without more, a Fill
// then an Invalidate would leave the filled value invisible, then visible
// (when the queued Set is applied) after Invalidate returned, until the
// queued delete follows; and a Set of a new key queued behind another
// queued Set of the same key is rejected by Ristretto's policy as an
// "update", leaving the older value in place for good.
//
// The rule that closes both: every write decides, pushes into Ristretto and,
// when its key was not resident (a queued new-key Set), waits for Ristretto to
// apply its buffer (Ristretto's Wait) before releasing the stripe lock. So no
// queued Set of a key ever outlives its stripe lock: when the next writer of
// that key runs, the store holds exactly what the last write left, updates
// and deletes act on it synchronously, and what a write returns (stored or
// not) is what Get sees. Updates of resident keys are synchronous in
// Ristretto and need no wait; only new keys pay the wait (a few microseconds
// when Ristretto keeps up), and fills of new keys follow an L2 read or a load
// that took milliseconds.

// fenceStripes is the number of fence stripes (a power of two).
const fenceStripes = 4096

type fenceStripe struct {
	mu  sync.Mutex
	gen atomic.Uint64 // written under mu, read by BeginFill without it
}

// Fence is a token from BeginFill: the generation of its key's stripe and the
// flush epoch when it was taken. The zero Fence never admits a Fill.
type Fence struct {
	stripe uint32 // stripe index + 1; 0 in the zero Fence
	gen    uint64
	epoch  uint64
	at     int64 // Now when taken
}

// Taken is when the Fence was taken, on Now's scale: the value a fill stores
// was read no earlier than this.
func (f Fence) Taken() int64 { return f.at }

func (c *Cache[V]) stripeOf(key string) (uint32, *fenceStripe) {
	i := uint32(maphash.String(c.seed, key)) & (fenceStripes - 1)
	return i, &c.fences[i]
}

// lock locks key's stripe and reports whether the Cache is open. On false
// the stripe is not locked.
func (c *Cache[V]) lock(key string) (uint32, *fenceStripe, bool) {
	i, s := c.stripeOf(key)
	s.mu.Lock()
	if c.closed.Load() {
		s.mu.Unlock()
		return 0, nil, false
	}
	return i, s, true
}

// BeginFill returns the Fence to pass to Fill (or SetFenced) for key. Take it
// before reading the value to be filled (from L2 or the source), so that any
// SetFenced, Replace, Invalidate or Flush after that read may have started makes
// the Fill fail.
func (c *Cache[V]) BeginFill(key string) Fence {
	i, s := c.stripeOf(key)
	return Fence{stripe: i + 1, gen: s.gen.Load(), epoch: c.epoch.Load(), at: c.Now()}
}

// Unmoved reports whether no Set, SetFenced, Replace, Bump or Invalidate of
// f's key (or of another key of its stripe) and no Flush happened since f
// was taken: a value read after f was taken is still as new as what this
// Cache knows of the key. Without the stripe lock, so a write may land just
// after it returns true; for deciding whether to reuse a value, not to store.
func (c *Cache[V]) Unmoved(f Fence) bool {
	if f.stripe == 0 {
		return false
	}
	return f.gen == c.fences[f.stripe-1].gen.Load() && f.epoch == c.epoch.Load()
}

// valid reports, under the stripe lock, whether f still admits a write.
func (c *Cache[V]) valid(i uint32, s *fenceStripe, f Fence) bool {
	return f.stripe == i+1 && f.gen == s.gen.Load() && f.epoch == c.epoch.Load()
}

// Fill stores v for key if no SetFenced, Replace or Invalidate of key
// (or of another key of its stripe) and no Flush happened since BeginFill
// returned f. It does not fence other fills. ttl <= 0 means Options.TTL; ttl
// is capped at MaxTTL, then jittered. The entry costs len(key) + size +
// ItemOverhead bytes of the budget.
//
// Fill returns true if v is stored: from then on Get returns it until it
// expires, is evicted, or a later write replaces or removes it. It returns
// false if fenced, refused (admission, cost above MaxBytes, size < 0),
// dropped (Ristretto's set buffer full) or closed; then the Cache holds
// whatever it held before for key, unless the Fill was refused for its size,
// which removes key, as any write of a value that cannot be cached must.
func (c *Cache[V]) Fill(key string, f Fence, v V, size int64, ttl time.Duration) bool {
	i, s, ok := c.lock(key)
	if !ok {
		return false
	}
	defer s.mu.Unlock()
	if !c.valid(i, s, f) {
		c.counters.fenced.Add(1)
		return false
	}
	return c.store(key, v, size, ttl)
}

// SetFenced stores v for key as a write by this node whose value was read
// or written after BeginFill returned f. If the key's fence has not moved
// since (no SetFenced, Replace, Invalidate of key, no Flush), it bumps the
// fence (so fills that began earlier fail) and replaces any entry (ttl as
// for Fill), returning whether v is stored; if not (refused, dropped,
// closed), key has no entry afterwards. Otherwise some
// other change of key arrived while this write was in flight and which one
// is newer cannot be told, so it behaves as Invalidate and returns false.
func (c *Cache[V]) SetFenced(key string, f Fence, v V, size int64, ttl time.Duration) bool {
	i, s, ok := c.lock(key)
	if !ok {
		return false
	}
	defer s.mu.Unlock()
	valid := c.valid(i, s, f)
	s.gen.Add(1)
	if !valid {
		c.counters.fenced.Add(1)
		c.rc.Del(key)
		return false
	}
	return c.store(key, v, size, ttl)
}

// Replace is the NEW_IMAGE update: if key has a live entry old and newer(old)
// is true, it stores v (bumping the fence) and returns whether v is stored. If the
// entry is newer than v (newer false) it keeps it and returns false; the
// key's fence moves in both cases.
// If key has no live entry it stores nothing (Replace never populates) but
// still bumps the key's fence, as Invalidate would: a fill in flight may
// carry a value older than the change being applied.
//
// newer runs under the key's stripe lock: it must be quick and must not call
// the Cache.
func (c *Cache[V]) Replace(key string, v V, size int64, ttl time.Duration, newer func(old V) bool) bool {
	_, s, ok := c.lock(key)
	if !ok {
		return false
	}
	defer s.mu.Unlock()
	old, found := c.rc.Get(key)
	if found && old.exp <= c.Now() {
		found = false
	}
	if !found {
		s.gen.Add(1)
		return false
	}
	// Either way the fence moves: a fill in flight may carry a value older
	// than the entry kept, as well as than v.
	s.gen.Add(1)
	if !newer(old.v) {
		return false
	}
	return c.store(key, v, size, ttl)
}

// Bump moves key's fence without touching its entry: fills that began
// earlier fail. For a change known to be no newer than the entry L1 holds
// (so the entry stays), while fills in flight may still be older than it.
func (c *Cache[V]) Bump(key string) {
	_, s, ok := c.lock(key)
	if !ok {
		return
	}
	s.gen.Add(1)
	s.mu.Unlock()
}

// Invalidate removes key's entry, if any, and bumps its fence so that fills
// that began earlier fail. When it returns, no Get returns the removed value
// or the value of a fill that began before the call.
func (c *Cache[V]) Invalidate(key string) {
	_, s, ok := c.lock(key)
	if !ok {
		return
	}
	defer s.mu.Unlock()
	s.gen.Add(1)
	c.rc.Del(key)
	c.counters.invalidations.Add(1)
}

// Flush removes every entry and makes every Fence taken before it stale.
// When it returns, no Get returns a value stored before the call or filled by
// a fill that began before it. It holds every stripe lock while it runs
// (about a millisecond plus the time to drop the entries).
func (c *Cache[V]) Flush() {
	for i := range c.fences {
		c.fences[i].mu.Lock()
	}
	defer func() {
		for i := range c.fences {
			c.fences[i].mu.Unlock()
		}
	}()
	if c.closed.Load() {
		return
	}
	c.epoch.Add(1)
	c.counters.clearing.Store(true)
	c.rc.Clear()
	c.counters.clearing.Store(false)
	c.counters.flushes.Add(1)
}

// store puts v into Ristretto under key's stripe lock (held by the caller)
// and returns once Get sees it, or once it is known refused or dropped (see
// the comment at the top of this file).
func (c *Cache[V]) store(key string, v V, size int64, ttl time.Duration) bool {
	cost := int64(len(key)) + size + c.opts.itemOverhead
	if size < 0 || cost > c.opts.maxBytes || cost < size {
		// Ristretto would refuse a new key this large, but would apply
		// an update of a resident key at once and charge the budget
		// more than it holds. Either way the old value must go.
		c.counters.rejected.Add(1)
		c.rc.Del(key)
		return false
	}
	// No Ristretto TTL: Get checks exp itself (see slot).
	if !c.rc.Set(key, slot[V]{v: v, exp: c.Now() + int64(c.opts.entryTTL(ttl))}, cost) {
		// Only a new key's Set can be dropped (buffer full): key had
		// no entry and still has none.
		c.counters.dropped.Add(1)
		return false
	}
	if !c.resident(key) {
		// A new key: queued. Apply it before anyone else writes key.
		c.rc.Wait()
		if !c.resident(key) {
			// Refused by admission (counted by onReject).
			return false
		}
	}
	c.counters.sets.Add(1)
	return true
}

// resident reports whether Ristretto's store holds an entry for key, without
// touching the admission policy's counters as Get would.
func (c *Cache[V]) resident(key string) bool {
	_, ok := c.rc.GetTTL(key)
	return ok
}

package tiered

import (
	"sync"
	"time"

	"github.com/tieredcache/tieredcache/l1"
	"github.com/tieredcache/tieredcache/l2"
)

// keyIndex maps the hash of each key's partition key value (l2.KeyHash) to
// the key, for a Source that names changed items by hash
// (invalidation.HashingSource). It is written where a key may enter L1: when
// a fill or write takes its fence (so a change of the key that arrives while
// the fill is in flight finds it and fences it) and when the entry is
// stored. The L1-hit path never touches it.
//
// It forgets nothing a change may still need: every stored entry dies within
// L1MaxTTL of being stored, and a key stays indexed for at least a period
// (L1MaxTTL + 1 s, the second covering the moment between registering and
// storing) after its last registration: keys go into the current
// generation; generations rotate every period, on the L1 clock read under
// the stripe lock; the previous one is kept for a period more.
// Entries evicted early stay indexed until then (an eviction by hash of an
// absent key is a no-op). Memory: about 50 bytes per key registered within
// the last two periods (the key's bytes are shared with the caller's
// string).
//
// Two keys with one hash in the current generation cannot both be indexed:
// the displaced one is dropped from L1 (and its fills fenced) instead, so an
// index collision, like a message's hash collision, costs an eviction only.
type keyIndex struct {
	namespace string
	period    int64        // nanoseconds on the l1 clock
	now       func() int64 // the l1 clock
	stripes   [keyIndexStripes]keyIndexStripe
}

const keyIndexStripes = 64

type keyIndexStripe struct {
	mu        sync.Mutex
	cur, prev map[uint64]string
	since     int64 // when cur began (l1 clock)
}

func newKeyIndex(namespace string, maxTTL time.Duration, now func() int64) *keyIndex {
	x := &keyIndex{namespace: namespace, period: int64(maxTTL + time.Second), now: now}
	t := now()
	for i := range x.stripes {
		x.stripes[i].cur = map[uint64]string{}
		x.stripes[i].since = t
	}
	return x
}

// add indexes key; it returns a different key displaced by a collision,
// which the caller must invalidate, or "".
func (x *keyIndex) add(key string) (displaced string) {
	h := l2.KeyHash(x.namespace, key)
	s := &x.stripes[h%keyIndexStripes]
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := x.now(); now-s.since >= x.period {
		s.prev, s.cur, s.since = s.cur, make(map[uint64]string, len(s.cur)), now
	}
	if old, ok := s.cur[h]; ok && old != key {
		displaced = old
	}
	s.cur[h] = key
	return displaced
}

// lookup appends to keys the keys indexed under h.
func (x *keyIndex) lookup(h uint64, keys []string) []string {
	s := &x.stripes[h%keyIndexStripes]
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.cur[h]; ok {
		keys = append(keys, k)
	}
	if k, ok := s.prev[h]; ok && (len(keys) == 0 || keys[len(keys)-1] != k) {
		keys = append(keys, k)
	}
	return keys
}

// indexKey registers key in the index, if there is one (hash mode).
func (c *Cache[V]) indexKey(key string) {
	if c.keys == nil {
		return
	}
	if d := c.keys.add(key); d != "" {
		c.l1.Invalidate(d)
	}
}

// beginFill takes key's fill fence, after indexing key (hash mode): a change
// named by hash that arrives from then on finds the key and moves the fence.
func (c *Cache[V]) beginFill(key string) l1.Fence {
	c.indexKey(key)
	return c.l1.BeginFill(key)
}

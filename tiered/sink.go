package tiered

import (
	"time"

	"github.com/tieredcache/tieredcache/internal/mono"
	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/l2"
)

// sink receives the stream consumer's events. It runs on the consumer's
// goroutine and must not block.
type sink[V any] struct{ c *Cache[V] }

// Changed drops key from L1 (bumping its fence, so fills in flight lose), or
// with ReplaceOnChange and a newer image, replaces it in place.
//
// A node's own writes come back too: with KEYS_ONLY they evict the entry the
// write had just stored (the next Get costs one L2 read); with
// ReplaceOnChange the versions match and nothing happens.
//
// A change named by hash (Change.KeyHash; a fan-out bridge with key hashes)
// applies to every key the index holds under that hash. A change with a
// compact image (Change.Summary) keeps the entry only if it is provably this
// node's own write of it (keepOwn).
func (s sink[V]) Changed(ch invalidation.Change) {
	c := s.c
	if ch.PartitionKey == "" {
		if c.keys == nil {
			return // not a HashingSource: it sends no hashes
		}
		var buf [2]string
		for _, key := range c.keys.lookup(ch.KeyHash, buf[:0]) {
			s.changed(key, ch)
		}
		return
	}
	key, ok := c.l2.DecodeKey(ch.PartitionKey)
	if !ok {
		// Another namespace, or a lease item (l2.IsLeasePartitionKey: its
		// partition key never decodes): a lease changes no entry, so fills
		// in flight here (waiting on it) must not lose.
		return
	}
	s.changed(key, ch)
}

func (s sink[V]) changed(key string, ch invalidation.Change) {
	c := s.c
	if ch.Summary != nil && s.keepOwn(key, *ch.Summary) {
		return
	}
	if !ch.Created.IsZero() {
		c.stats.observeLag(time.Since(ch.Created))
	}
	if c.o.ReplaceOnChange && ch.NewImage != nil && s.replace(key, ch) {
		return
	}
	c.l1.Invalidate(key)
	c.stats.invalidations.Add(1)
	if c.o.OnInvalidate != nil {
		c.o.OnInvalidate(key, ch.Created)
	}
}

// keepOwn applies a compact image: it keeps the entry L1 holds for key
// (moving its fence, as replace does, for fills in flight may be older)
// only if the image is exactly that entry's write by this node: the same
// version, and a proof equal to the one this node computes from its own
// writer mark and the entry's value. A foreign write that sets an equal
// version carries another mark, and a change of the value under this
// node's mark another value hash: both give another proof and evict. Unlike
// replace, an image older than the entry is not kept (a summary does not
// say who wrote it): that costs one L2 read.
func (s sink[V]) keepOwn(key string, sm invalidation.ImageSummary) bool {
	c := s.c
	old, ok := c.l1.Peek(key)
	if !ok || sm.Proof == 0 || old.version != sm.Version ||
		l2.WriteProof(c.owner, old.sum, old.notFound) != sm.Proof {
		return false
	}
	c.l1.Bump(key)
	return true
}

// replace applies a NEW_IMAGE record; false means "invalidate instead".
func (s sink[V]) replace(key string, ch invalidation.Change) bool {
	c := s.c
	item, err := l2.ItemFromStreamImage(ch.NewImage)
	if err != nil {
		c.stats.l2Corrupt.Add(1)
		return false
	}
	// A lease an older release took on the key's item (format 1) changes
	// no entry (it lands only on a vacant item, and keeps the version):
	// nothing to do, and fills in flight here (which wait for that lease's
	// fill) must not lose.
	if item.Leased {
		return true
	}
	// An image no newer than the entry L1 holds is either this node's own
	// write or fill coming back (its writer mark proves it: keep the entry,
	// but move the fence, as a fill still in flight may be older than it),
	// or someone else's write whose version says nothing: a foreign writer
	// may store any version, even a lower one, after ours. Drop the entry.
	sum := valueSum(item.Value)
	if old, ok := c.l1.Peek(key); ok && old.version >= item.Version {
		if c.ownWrite(old, item, sum) {
			c.l1.Bump(key)
			return true
		}
		return false
	}
	if !item.ExpiresAt.IsZero() && !item.ExpiresAt.After(time.Now()) {
		return false
	}
	if item.Value == nil && !item.NotFound { // tombstone or lease-only
		return false
	}
	e, ok := c.fromItem(item)
	if !ok { // undecodable (its Decode failed or panicked): drop the entry
		c.stats.l2Corrupt.Add(1)
		return false
	}
	ttl := c.ttl.l1For(0, item.ExpiresAt)
	if ttl <= 0 {
		return false // expired meanwhile
	}
	// Current as of the record, not of its arrival: after a lapse of trust
	// (a backlog of records) a later record of the key may still be unread,
	// and only entries known current within T/2 are served then. The
	// record's time is rounded down (to the second on AWS, the minute on
	// DynamoDB Local), which only makes this more careful.
	now := c.l1.Now()
	at := now - c.halfT // no creation time: as old as a lapse may serve none of
	if !ch.Created.IsZero() {
		at = min(now, mono.Of(ch.Created))
	}
	c.stamp(e, now, ttl) // its L1 life and refresh point run from now
	e.stored = at
	c.indexKey(key) // hash mode: the entry's new life must stay in the index
	replaced := c.l1.Replace(key, e, heldSize(item.Value), ttl, func(old *entry[V]) bool {
		return old.version < item.Version
	})
	if replaced {
		c.stats.replacements.Add(1)
		if c.o.OnInvalidate != nil {
			c.o.OnInvalidate(key, ch.Created)
		}
		return true
	}
	// Not replaced: L1 holds nothing (invalidate, so that fills in flight
	// lose), or an entry that became as new meanwhile (keep it if the image
	// is provably this node's own, as above).
	if old, ok := c.l1.Peek(key); ok && c.ownWrite(old, item, sum) {
		return true
	}
	return false
}

// ownWrite reports whether the image item (whose encoded value hashes to
// sum) is provably this node's own write of the entry old, or an older one
// of its own: it carries this node's writer mark, and is either older than
// old or exactly old's write (same version, same value). A foreign
// UpdateItem that changes the value but leaves the mark and the version is
// neither.
func (c *Cache[V]) ownWrite(old *entry[V], item l2.Item, sum uint64) bool {
	return item.Writer != "" && item.Writer == c.owner &&
		(old.version > item.Version || old.version == item.Version && old.sum == sum && old.notFound == item.NotFound)
}

// Flush drops every L1 entry: the consumer may have missed changes.
func (s sink[V]) Flush(reason error) {
	s.c.l1.Flush()
	s.c.o.Logger.Warn("tieredcache: L1 flushed: lost track of the stream", "reason", reason)
}

// TrustUntil moves the deadline the hit path compares its clock reading
// with (see Cache.trustedUntil). A zero until withdraws trust. It also keeps
// Stats' degraded episodes and the log, from the transitions it sees.
func (s sink[V]) TrustUntil(until time.Time) {
	c := s.c
	if until.IsZero() {
		c.trustedUntil.Store(0)
		if c.trusting.Swap(false) {
			c.stats.degradedEpisodes.Add(1)
			c.o.Logger.Warn("tieredcache: stream consumer unhealthy; serving only young L1 entries")
		}
		return
	}
	c.trustedUntil.Store(mono.Of(until))
	if !c.trusting.Swap(true) {
		c.o.Logger.Info("tieredcache: stream healthy; L1 trusted")
	}
}

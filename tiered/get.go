package tiered

import (
	"context"
	"errors"
	"time"

	"github.com/tieredcache/tieredcache/l1"
	"github.com/tieredcache/tieredcache/l2"
)

// Get returns the value of key from L1, else from L2, else ErrNotFound. It
// never calls a loader. Concurrent misses of one key share one L2 read.
func (c *Cache[V]) Get(ctx context.Context, key string) (V, error) {
	if e, ok := c.lookup(key); ok {
		return e.result()
	}
	return c.miss(ctx, key, nil)
}

// GetOrLoad returns the value of key from L1, else from L2, else from loader,
// storing what it loads in both tiers. Concurrent misses of one key in this
// process share one L2 read and one loader call (the first caller's loader);
// with leases, one loader call across all processes. A caller whose ctx ends
// returns ctx's error at once while the others still get the value. A loader
// error is returned to every waiting caller and not cached; ErrNotFound from
// the loader is cached for NegativeTTL. A DynamoDB failure never fails the
// call while the loader works.
func (c *Cache[V]) GetOrLoad(ctx context.Context, key string, loader Loader[V]) (V, error) {
	if e, ok := c.lookup(key); ok {
		if e.refreshAt != 0 && loader != nil { // refresh-ahead is on
			c.refreshAhead(ctx, key, e, loader)
		}
		return e.result()
	}
	if loader == nil {
		var zero V
		if c.isClosed.Load() {
			return zero, ErrClosed
		}
		return zero, ErrNilLoader
	}
	return c.miss(ctx, key, loader)
}

// lookup is the L1-hit path of every reader's lookup (Get, GetOrLoad,
// GetMany). One clock reading serves both checks: the entry's expiry (in l1)
// and trust. An entry L1 holds is served while trust holds at that reading;
// once trust has lapsed (the consumer has not completed a poll of every shard
// within T/2: it is failing, or this process was frozen), only entries younger
// than T/2 are, until the consumer has caught up (and flushed). A lapsed
// entry found is counted as a bypass, not as a hit.
func (c *Cache[V]) lookup(key string) (*entry[V], bool) {
	now := c.l1.Now()
	e, ok := c.l1.GetAt(key, now)
	if ok && (now < c.trustedUntil.Load() || now-e.stored < c.halfT) {
		return e, true
	}
	if ok {
		c.stats.degradedBypasses.Add(1)
	}
	return nil, false
}

// peek is lookup for the cache's own re-checks (before a fill): nothing is
// counted.
func (c *Cache[V]) peek(key string) (*entry[V], bool) {
	now := c.l1.Now()
	e, ok := c.l1.PeekAt(key, now)
	return e, ok && c.servableAt(e, now)
}

// servableAt says whether an L1 entry may be served at now (see lookup).
func (c *Cache[V]) servableAt(e *entry[V], now int64) bool {
	return now < c.trustedUntil.Load() || now-e.stored < c.halfT
}

func (e *entry[V]) result() (V, error) {
	if e.err != nil {
		return e.value, e.err
	}
	if e.notFound {
		var zero V
		return zero, ErrNotFound
	}
	return e.value, nil
}

// miss runs (or joins) the one flight for key and waits for it or for ctx.
func (c *Cache[V]) miss(ctx context.Context, key string, loader Loader[V]) (V, error) {
	var zero V
	if c.isClosed.Load() {
		return zero, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if _, err := c.l2.EncodeKey(key); err != nil {
		return zero, err
	}
	flightKey := "g\x00" + key // Get and GetOrLoad flights differ in what they may do
	if loader != nil {
		flightKey = "l\x00" + key
	}
	ch := c.flights.DoChan(flightKey, func() (any, error) {
		return c.sharedFlight(ctx, key, loader) // flight, or join a GetMany's load (getmany.go)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return zero, r.Err
		}
		return r.Val.(*entry[V]).result()
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// flight is the one load of key in this process. It runs on its own
// goroutine (singleflight.DoChan), on a context detached from the caller's.
func (c *Cache[V]) flight(callerCtx context.Context, key string, loader Loader[V]) (res any, err error) {
	if !c.track() {
		return nil, ErrClosed
	}
	defer c.wg.Done()
	ctx, cancel := c.loadCtx(callerCtx)
	defer cancel()
	defer func() {
		// A panic here would crash the process (DoChan re-panics on its
		// goroutine). Loaders and codecs have their own guards (contain,
		// decode, encode): this one is for our own bugs.
		if r := recover(); r != nil {
			res, err = nil, internalPanic("flight", r)
		}
		err = c.loadErr(ctx, err)
	}()

	e, f, err := c.fetch(ctx, key, loader)
	if err == nil && e.err == nil && !e.fromSource && c.l1.Now()-f.Taken() > c.halfT {
		// What this flight read was current when it began, more than T/2
		// ago (DynamoDB was slow, or this process was frozen meanwhile), and
		// callers that joined it since must not get a value older than a
		// write acknowledged more than T before they asked: read again. A
		// loader is never called twice for this: a loaded value was checked
		// against the table by its conditional write, or is what the source
		// said.
		c.stats.refetches.Add(1)
		e, _, err = c.fetch(ctx, key, loader)
	}
	return e, err
}

// fetch is one attempt of a flight: L1 again, L2, then the loader. It
// returns the fence it took (when the attempt began).
func (c *Cache[V]) fetch(ctx context.Context, key string, loader Loader[V]) (*entry[V], l1.Fence, error) {
	fence := c.l1.BeginFill(key)
	e, err := c.fetchFenced(ctx, key, loader, fence)
	return e, fence, err
}

func (c *Cache[V]) fetchFenced(ctx context.Context, key string, loader Loader[V], fence l1.Fence) (_ *entry[V], err error) {
	// A flight that ended just before this one began may have filled L1.
	var stale *entry[V] // the last value known, for StaleIfError
	now := c.l1.Now()
	if e, ok := c.l1.PeekAt(key, now); ok {
		if c.servableAt(e, now) {
			return e, nil
		}
		stale = e
	}
	var item l2.Item
	if c.pend.blocks(key) {
		// A failed invalidation of key is pending here: L2 may hold the
		// value it meant to replace. Neither read it nor fill it (pending.go).
		err = errPendingKey
	} else {
		item, err = l2Call(c, func() (l2.Item, error) { return c.l2.Get(ctx, key) })
	}
	var seen []l2.FillOption
	var corrupt corruptOnce
	switch {
	case err == nil:
		if e, ok := c.fromItem(item); ok {
			c.stats.l2Hits.Add(1)
			c.fillL1(key, fence, e, int64(len(item.Value)), 0, item.ExpiresAt)
			return e, nil
		}
		corrupt.count(&c.stats)
	case errors.Is(err, l2.ErrNotFound):
		c.stats.l2Misses.Add(1)
		if item.Expired && c.o.StaleIfError && stale == nil && time.Since(item.ExpiresAt) < c.o.MaxStale {
			stale, _ = c.fromItem(item)
		}
		// Fill only if the key is still at this version: a Set or Delete
		// landing during the load makes the fill lose, with or without a lease.
		seen = []l2.FillOption{l2.IfVersion(item.Version)}
	case errors.Is(err, l2.ErrCorruptItem):
		corrupt.count(&c.stats)
		seen = []l2.FillOption{l2.IfVersion(0)} // a fill replaces the corrupt item, unless a write lands first
	}
	if loader == nil {
		switch {
		case isTableMissing(err):
			return nil, &TableMissingError{Table: c.o.Table, Op: "Get", Err: err}
		case l2Down(err):
			// DynamoDB did not answer, or this node's own failed write left
			// L2 unfit to answer (errPendingKey): Get cannot tell "absent".
			return nil, &L2Error{Op: "Get", Err: err}
		}
		return &entry[V]{notFound: true}, nil
	}
	e, err := c.load(ctx, key, loader, fence, l2Down(err), seen, &corrupt)
	if err != nil && c.o.StaleIfError && stale != nil && !stale.notFound && !errors.Is(err, ErrNotFound) {
		c.stats.staleServed.Add(1)
		return &entry[V]{value: stale.value, version: stale.version, err: &StaleError{Err: err}}, nil
	}
	return e, err
}

// load calls the loader (after taking, or waiting on, the cross-node lease)
// and writes the result to L2, then L1.
func (c *Cache[V]) load(ctx context.Context, key string, loader Loader[V], fence l1.Fence, l2IsDown bool, seen []l2.FillOption, corrupt *corruptOnce) (*entry[V], error) {
	lease := ""
	if !c.o.DisableLeases && !l2IsDown {
		var e *entry[V]
		lease, e, l2IsDown = c.acquireOrWait(ctx, key, fence, corrupt)
		if e != nil {
			return e, nil
		}
	}
	ld, err := c.loadSource(ctx, key, loader, l2IsDown)
	if err != nil {
		c.releaseLease(key, lease)
		return nil, err
	}
	e, enc, ttl, l1Want := ld.e, ld.enc, ld.ttl, ld.l1Want
	if lease != "" {
		// The lease alone guards the fill: it was taken before the loader
		// ran, and any Set or Delete since voids it. The version the miss saw
		// may be older than the lease (a Delete in between), and must not
		// refuse the fill, which would leave the lease held until it expires.
		seen = nil
	} else if seen == nil {
		// Neither a lease nor the version the miss saw guards this fill (the
		// L2 read failed): a Delete since the load began could not make it
		// lose in L2, so L2 does not get it. L1 does, fenced as usual.
		c.fillL1(key, fence, e, int64(len(enc)), l1Want, time.Now().Add(ttl))
		return e, nil
	}
	ver, err := l2Store(c, key, enc, func() (int64, error) {
		return c.l2.Fill(ctx, key, enc, e.notFound, ttl, lease, seen...)
	})
	switch {
	case err == nil:
		e.version = ver
	case errors.Is(err, l2.ErrConflict), errors.Is(err, l2.ErrLeaseLost):
		// A write or delete of key landed while we loaded: what we loaded may
		// be older than the table, and no tier keeps it. The callers get the
		// newer entry the table holds, if there is one (some may have joined
		// after that write was acknowledged), else what the source said.
		c.stats.staleFillsDropped.Add(1)
		if cur, ok := c.newer(err); ok {
			return cur, nil
		}
		return e, nil
	case errors.Is(err, l2.ErrValueTooLarge):
		c.stats.l2TooLarge.Add(1) // serve and keep in L1 only
		c.releaseLease(key, lease)
	default:
		// L2 could not be written: keep the value in L1 only. The fence still
		// guards it against invalidations that arrive meanwhile. Give the
		// lease back so other nodes need not wait for it to expire.
		c.releaseLease(key, lease)
	}
	c.fillL1(key, fence, e, int64(len(enc)), l1Want, time.Now().Add(ttl))
	return e, nil
}

// fromItem decodes an L2 item (through decode: a Codec error or panic is
// false, never a crash). It counts nothing: each lookup counts the corrupt
// item it met once, in Stats.L2.Corrupt (see corruptOnce).
func (c *Cache[V]) fromItem(item l2.Item) (*entry[V], bool) {
	e := &entry[V]{version: item.Version, notFound: item.NotFound}
	if !item.NotFound {
		v, err := c.decode(item.Value)
		if err != nil {
			return nil, false
		}
		e.value = v
	}
	return e, true
}

// corruptOnce counts, in Stats.L2.Corrupt, the corrupt item one lookup of one
// key met, once however many times the lookup reads it (its first read, the
// lease answer, the lease wait's reads).
type corruptOnce bool

func (o *corruptOnce) count(c *counters) {
	if !*o {
		*o = true
		c.l2Corrupt.Add(1)
	}
}

// fillL1 stores e unless key was written or invalidated since fence was taken.
// l1's Fill returns only once the entry is visible to Get, so callers arriving
// after this flight see it instead of starting another. size is the encoded
// value's size; ttl the L1 lifetime wanted (0: L1TTL), exp when the L2 item
// expires.
func (c *Cache[V]) fillL1(key string, fence l1.Fence, e *entry[V], size int64, ttl time.Duration, exp time.Time) {
	l1ttl := c.l1TTL(ttl, exp)
	if l1ttl <= 0 {
		return // the L2 item expired meanwhile: serve it, do not keep it
	}
	c.stamp(e, fence.Taken(), l1ttl)
	c.l1.Fill(key, fence, e, size, l1ttl)
}

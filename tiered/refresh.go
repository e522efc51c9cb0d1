package tiered

import (
	"context"
	"errors"
	"time"

	"github.com/tieredcache/tieredcache/l2"
)

// refreshAhead starts, at most once per entry, a background reload of key
// once a hit finds e past its soft TTL (Options.RefreshAhead of its L1 TTL).
// Only keys still being read get there: refreshing is driven by hits. The
// caller is not delayed: the hit returns e at once. The loader runs as on a
// miss: on the caller's context values (cancellation dropped), with its own
// LoadTimeout.
func (c *Cache[V]) refreshAhead(callerCtx context.Context, key string, e *entry[V], loader Loader[V]) {
	if c.l1.Now() < e.refreshAt || !e.refreshing.CompareAndSwap(false, true) {
		return
	}
	if !c.track() {
		return
	}
	c.stats.refreshes.Add(1)
	values := context.WithoutCancel(callerCtx)
	go func() {
		defer c.wg.Done()
		// Registered as GetOrLoad's loads are: a GetOrLoad or GetMany of key
		// meanwhile joins the refresh instead of loading again, and vice
		// versa. Its own flight key: a GetOrLoad does not join it through
		// singleflight, but through the registry, which lets it join only a
		// refresh younger than T/2 whose key has not moved (joinable).
		<-c.flights.DoChan("r\x00"+key, func() (any, error) {
			return c.claimed(key, func() (any, error) { return c.refresh(values, key, e, loader) })
		})
	}()
}

// refresh reloads key whose current L1 entry is old. If another node
// refreshed or wrote the key already, it takes that newer L2 version instead
// of calling the loader. A reload is written to L2 only over old's version
// (l2.Table.Refresh), and to L1 only if the key was not invalidated since the
// refresh began, so a refresh racing a Set or Delete never brings back what
// they replaced. On failure the current entry stays until its TTL.
func (c *Cache[V]) refresh(values context.Context, key string, old *entry[V], loader Loader[V]) (res any, err error) {
	ctx, cancel := c.loadCtx(values)
	defer cancel()
	defer func() {
		if r := recover(); r != nil { // loaders and codecs have their own guards
			res, err = nil, internalPanic("refresh", r)
		}
		if err != nil {
			c.stats.refreshErrors.Add(1)
		}
		err = c.loadErr(ctx, err)
	}()
	fence := c.l1.BeginFill(key)

	var item l2.Item
	gerr := errPendingKey // a pending invalidation: L2 neither read nor written (pending.go)
	pending := c.pend.blocks(key)
	if !pending {
		item, gerr = l2Call(c, func() (l2.Item, error) { return c.l2.Get(ctx, key) })
	}
	if gerr == nil && item.Version > old.version {
		if e, ok := c.fromItem(item); ok {
			c.stats.refreshesFromL2.Add(1)
			c.fillL1(key, fence, e, int64(len(item.Value)), 0, item.ExpiresAt)
			return e, nil
		}
		c.stats.l2Corrupt.Add(1) // undecodable: reload from the source
	} else if errors.Is(gerr, l2.ErrCorruptItem) {
		c.stats.l2Corrupt.Add(1)
	}

	ld, err := c.loadSource(ctx, key, loader, l2Down(gerr))
	if err != nil {
		return nil, err
	}
	e, enc, ttl, l1Want := ld.e, ld.enc, ld.ttl, ld.l1Want
	ver, err := int64(0), errPendingKey
	if !pending {
		ver, err = l2Store(c, key, enc, func() (int64, error) {
			return c.l2.Refresh(ctx, key, enc, e.notFound, ttl, old.version)
		})
	}
	switch {
	case err == nil:
		e.version = ver
	case errors.Is(err, l2.ErrConflict):
		// The key changed in the table while we reloaded: what we loaded may
		// be older. Store nothing; the change's own stream record (or the
		// write on this node) has already dealt with L1. Callers joined to
		// this refresh get the newer entry, if the table has one.
		c.stats.staleFillsDropped.Add(1)
		if cur, ok := c.newer(err); ok {
			return cur, nil
		}
		return e, nil
	case errors.Is(err, l2.ErrValueTooLarge):
		c.stats.l2TooLarge.Add(1)
	default:
		// L2 unavailable: keep the reload in this L1 only, fenced as usual.
		// It keeps the version it replaces, so that the next refresh neither
		// takes that older L2 entry for a newer one nor writes over a
		// version that is not there.
		e.version = old.version
	}
	c.fillL1(key, fence, e, int64(len(enc)), l1Want, time.Now().Add(ttl))
	return e, nil
}

package tiered

import (
	"context"
)

// refreshAhead starts, at most once per entry, a background reload of key
// once a hit finds e past its refresh point (Options.RefreshAhead of its L1
// TTL). Only keys still being read get there: refreshing is driven by hits.
// The caller is not delayed: the hit returns e at once. The reload is a fill
// (fill.go, modeRefresh) registered as GetOrLoad's loads are, so a GetOrLoad
// or GetMany of key meanwhile joins it instead of loading again; if one is
// already loading key, there is nothing to refresh. The loader runs as on a
// miss: on the caller's context values (cancellation dropped), with its own
// LoadTimeout.
//
// The fill takes a newer L2 version if another node refreshed or wrote the
// key already, instead of calling the loader. A reload is written to L2 only
// over e's version (l2.Table.Refresh), and to L1 only if the key was not
// invalidated since the refresh began, so a refresh racing a Set or Delete
// never brings back what they replaced. On failure the current entry stays
// until its TTL.
func (c *Cache[V]) refreshAhead(callerCtx context.Context, key string, e *entry[V], loader Loader[V]) {
	if c.l1.Now() < e.refreshAt || !e.refreshing.CompareAndSwap(false, true) {
		return
	}
	fl, fs := c.join(flightKey{key, true}, false) // no one waits for a refresh but those who join it
	if fs == nil {
		return // a load of key is in flight: it refreshes the entry
	}
	if !c.track() {
		fl.out.err = ErrClosed
		c.flights.endOne(key, true, fl)
		return
	}
	c.stats.refreshes.Add(1)
	f := c.initFill(fs, modeRefresh, source[V]{one: loader}, key)
	f.old = e
	go c.fly(context.WithoutCancel(callerCtx), f, fl) // it calls c.wg.Done
}

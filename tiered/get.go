package tiered

import (
	"context"
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

// miss runs (or joins) the one fill of key in this process and waits for it
// or for ctx. A nil loader is a Get's miss: its fill never loads.
func (c *Cache[V]) miss(ctx context.Context, key string, loader Loader[V]) (V, error) {
	var zero V
	if c.isClosed.Load() {
		return zero, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if err := c.l2.CheckKey(key); err != nil {
		return zero, err
	}
	mode := modeGet
	if loader != nil {
		mode = modeLoad
	}
	// Nothing can end ctx, so this caller would wait for the whole fill
	// anyway, and a Get's fill calls no loader (whose Goexit would end this
	// goroutine): a fill it owns runs here, without a goroutine (inline).
	inline := mode == modeGet && ctx.Done() == nil
	fl, fs := c.join(flightKey{key, mode != modeGet}, !inline)
	switch {
	case fs == nil:
		if fl.batch {
			c.stats.loadsJoined.Add(1) // a GetMany is loading key
		}
	case !c.track():
		fl.out.err = ErrClosed
		c.flights.endOne(key, mode != modeGet, fl)
		return zero, ErrClosed
	case inline:
		c.fly(ctx, c.initFill(fs, mode, source[V]{}, key), fl) // it calls c.wg.Done
		return fl.out.result()
	default:
		go c.fly(ctx, c.initFill(fs, mode, source[V]{one: loader}, key), fl) // it calls c.wg.Done
	}
	select {
	case <-fl.done:
		return fl.out.result()
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// fly runs f, the fill of one key owned by the flight fl, on a goroutine of
// its own (or on its caller's, see miss) and a context detached from the
// caller's (loadCtx), then publishes its outcome.
//
// A fill whose answer came from L2 and was current more than T/2 before it
// ends (DynamoDB was slow, or this process was frozen meanwhile) runs again,
// once: callers that joined it since must not get a value older than a write
// acknowledged more than T before they asked. A loader is never called twice
// for this: a loaded value was checked against the table by its conditional
// write, or is what the source said.
func (c *Cache[V]) fly(callerCtx context.Context, f *fill[V], fl *flight[V]) {
	defer c.wg.Done()
	j := &f.jobs[0]
	defer func() { c.flights.endOne(j.key, f.mode != modeGet, fl) }()
	ctx := c.loadCtx(f, callerCtx)
	defer c.endLoad(f)
	f.ctx = ctx
	c.runFill(f)
	if f.mode != modeRefresh {
		if e := j.out.e; j.out.err == nil && e.err == nil && !e.fromSource && c.l1.Now()-j.fence.Taken() > c.halfT {
			c.stats.refetches.Add(1)
			*j = job[V]{key: j.key}
			c.runFill(f)
		}
	}
	j.out.err = c.loadErr(ctx, j.out.err)
	if f.mode == modeRefresh && j.out.err != nil {
		c.stats.refreshErrors.Add(1)
	}
	fl.out = j.out
}

// runFill runs f. A panic here would crash the process (it runs on a
// goroutine of its own). Loaders and codecs have their own guards (contain,
// decode, encode): this one is for our own bugs, and fails every key f had
// not answered.
func (c *Cache[V]) runFill(f *fill[V]) {
	defer func() {
		if r := recover(); r != nil {
			err := internalPanic("fill", r)
			for i := range f.jobs {
				if j := &f.jobs[i]; !j.done {
					j.finish(nil, err)
				}
			}
		}
	}()
	f.run()
}

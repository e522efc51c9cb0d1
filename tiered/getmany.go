package tiered

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tieredcache/tieredcache/l1"
	"github.com/tieredcache/tieredcache/l2"
)

// BatchLoader reads many keys from the source of truth in one call. It is
// given distinct, valid keys, some of those one GetMany was given: the ones
// no tier has and no other load in this process is already loading.
//
// It returns the values it found. A key absent from the map does not exist
// in the source: that is cached for NegativeTTL, as a Loader's ErrNotFound
// is. Keys in the map that were not asked for are ignored.
//
// The error is for the whole call, with two exceptions:
//
//   - a *BatchError (or an error wrapping one) fails only the keys it lists
//     (their values, if any, are ignored); the other keys are answered by the
//     map as above. A listed error matching ErrNotFound means not found.
//   - ErrNotFound (or an error wrapping it) means none of the keys exist.
//
// Any other error fails every key of the call, and nothing is cached. A
// failed key is not cached. SetTTL, called with the context given, sets the
// TTL of every value of this call. It runs as a Loader does: on a context
// detached from the callers' (values kept, cancellation dropped) with its
// own LoadTimeout, which also covers the L2 read before and writes after it.
type BatchLoader[V any] func(ctx context.Context, keys []string) (map[string]V, error)

// one is loader as a Loader of one key, for refresh-ahead.
func (loader BatchLoader[V]) one(ctx context.Context, key string) (V, error) {
	var zero V
	m, err := loader(ctx, []string{key})
	var be *BatchError
	if errors.As(err, &be) {
		err = be.Errors[key]
	}
	if err != nil {
		return zero, err
	}
	v, ok := m[key]
	if !ok {
		return zero, ErrNotFound
	}
	return v, nil
}

// BatchError reports, key by key, what failed in a batch. GetMany returns it
// when some keys could not be answered; a BatchLoader may return one to fail
// only some of its keys. errors.Is and errors.As see every key's error, so
// errors.Is(err, l2.ErrKeyTooLong) holds when some key was too long. Its
// message never names a key.
type BatchError struct {
	Errors map[string]error // by key; never empty when returned by GetMany
}

func (e *BatchError) Error() string {
	errs := e.Unwrap()
	switch len(errs) {
	case 0:
		return "tiered: batch: no key failed"
	case 1:
		return "tiered: batch: 1 key failed: " + errs[0].Error()
	}
	return fmt.Sprintf("tiered: batch: %d keys failed, first: %v", len(errs), errs[0])
}

// Unwrap returns every key's error, ordered by key.
func (e *BatchError) Unwrap() []error {
	keys := make([]string, 0, len(e.Errors))
	for k, err := range e.Errors {
		if err != nil {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	errs := make([]error, len(keys))
	for i, k := range keys {
		errs[i] = e.Errors[k]
	}
	return errs
}

// GetMany returns the values of keys: from L1, else from L2 (BatchGetItem,
// 100 keys a call, UnprocessedKeys retried), else from one call of loader
// for all the keys still missing, storing what it loads in both tiers.
//
// The map holds the keys found. A key that does not exist (a cached or
// loaded not-found) is simply absent from it, and is not an error. The error
// is nil when every key was answered, found or not; otherwise it is a
// *BatchError with one error per key that could not be: a bad key
// (l2.ErrEmptyKey, l2.ErrInvalidKey, l2.ErrKeyTooLong), the loader's error,
// an *EncodeError. Those keys are absent from the map, except a key served
// stale by a load it joined (StaleIfError): its value is in the map and its
// *StaleError in the BatchError. Bad keys never fail the others. Duplicate
// keys are answered once. A nil batch loader (ErrNilLoader), ErrClosed or
// ctx ending fail the whole call: the map is then nil.
//
// Keys already being loaded in this process, by a GetOrLoad or another
// GetMany, are not loaded again: this call takes that load's result. Likewise
// a GetOrLoad of a key this call is loading waits for it (and gets the batch
// loader's answer or error). The shared load runs on a context detached from
// ctx: a caller whose ctx ends returns ctx's error at once while the load
// goes on for the others and fills the tiers.
//
// Fills are guarded as GetOrLoad's are: a Set, Delete or invalidation of a
// key while it loads makes its fill lose in L1, and its L2 write is
// conditioned on the version BatchGetItem saw, so it loses in L2 too. GetMany
// takes no leases: nodes that miss the same keys at once may each call their
// batch loader (each fill still lands only on the version it saw). A
// DynamoDB failure never fails the call while the loader works: the missing
// keys are loaded and kept in L1 only.
func (c *Cache[V]) GetMany(ctx context.Context, keys []string, loader BatchLoader[V]) (map[string]V, error) {
	if c.isClosed.Load() {
		return nil, ErrClosed
	}
	if loader == nil {
		return nil, ErrNilLoader
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	found := make(map[string]V, len(keys))
	var errs map[string]error
	fail := func(k string, err error) {
		if errs == nil {
			errs = make(map[string]error)
		}
		errs[k] = err
	}
	seen := make(map[string]struct{}, len(keys))
	var miss []string
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		if e, ok := c.lookup(k); ok {
			if !e.notFound {
				found[k] = e.value
			}
			if e.refreshAt != 0 { // refresh-ahead is on
				c.refreshAhead(ctx, k, e, loader.one)
			}
			continue
		}
		if _, err := c.l2.EncodeKey(k); err != nil {
			fail(k, err)
			continue
		}
		miss = append(miss, k)
	}
	if len(miss) > 0 {
		if !c.track() {
			return nil, ErrClosed
		}
		b, joined := c.claim(miss)
		if len(b.keys) > 0 {
			go c.loadMany(ctx, b, loader) // it calls c.wg.Done
		} else {
			c.wg.Done()
		}
		if len(joined) > 0 {
			c.stats.loadsJoined.Add(uint64(len(joined)))
		}
		// Wait for our own load and every load we joined (a batch's keys
		// share one channel).
		waits := make(map[chan struct{}]struct{}, 1+len(joined))
		if len(b.keys) > 0 {
			waits[b.done] = struct{}{}
		}
		for _, call := range joined {
			waits[call.done] = struct{}{}
		}
		for ch := range waits {
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		answer := func(k string, call *loadCall[V]) {
			if call.err != nil {
				fail(k, call.err)
				return
			}
			v, err := call.e.result()
			switch {
			case err == nil:
				found[k] = v
			case errors.Is(err, ErrNotFound):
			default:
				if errors.Is(err, ErrStale) {
					found[k] = v
				}
				fail(k, err)
			}
		}
		for i, k := range b.keys {
			answer(k, b.calls[i])
		}
		for k, call := range joined {
			answer(k, call)
		}
	}
	if errs != nil {
		return found, &BatchError{Errors: errs}
	}
	return found, nil
}

// Collapsing across GetOrLoad and GetMany.
//
// GetOrLoad collapses through c.flights (singleflight), one flight per key;
// GetMany cannot use it without a goroutine per key and without learning
// which keys it joined only once they finish. So both also register the keys
// they load in c.loads: the first to claim a key loads it, the others wait
// for its result. A GetOrLoad flight claims its key when it starts (flight
// key "l\x00"+key; Get flights never load and do not take part), a GetMany
// claims all its missing keys at once. A GetMany's own load never waits on
// another's, so two batches with overlapping keys cannot deadlock: each
// loads what it claimed, publishes it, then waits for what it joined.

// loadCall is one key's load in flight: e or err are set before done closes.
type loadCall[V any] struct {
	done chan struct{} // shared by the keys of one GetMany
	// fence was taken when the load was claimed: a caller joins the load
	// only while its key has not moved since and it is younger than T/2
	// (joinable), so that no joiner gets a value older than a write this
	// node already knows of (read-your-writes), or older than T/2 when it
	// asked (a load held up by a slow DynamoDB or a frozen process).
	fence l1.Fence
	e     *entry[V]
	err   error
}

// detach makes callers arriving from now on start a new load of key rather
// than join a flight in flight, which may have read key before a change this
// node now knows of (its own write, a stream record): read-your-writes, and
// no value older than the change. Flights in flight go on for the callers
// they already have; their fills are fenced as usual. (The registry needs no
// such step: a load whose key moved is not joinable.)
func (c *Cache[V]) detach(key string) {
	c.flights.Forget("l\x00" + key)
	c.flights.Forget("g\x00" + key)
}

// joinable reports whether a caller arriving now may take call's result
// instead of loading key itself (see loadCall.fence).
func (c *Cache[V]) joinable(call *loadCall[V]) bool {
	return c.l1.Unmoved(call.fence) && c.l1.Now()-call.fence.Taken() < c.halfT
}

// loadRegistry maps each key being loaded in this process to its loadCall.
type loadRegistry[V any] struct {
	mu sync.Mutex
	m  map[string]*loadCall[V]
}

// manyLoad is the part of a GetMany that this call loads itself.
type manyLoad[V any] struct {
	keys  []string
	calls []*loadCall[V] // calls[i] is keys[i]'s
	done  chan struct{}
}

// claim registers a new load for each of keys no one is loading (returned
// as a manyLoad) and returns the loads in flight for the others.
func (c *Cache[V]) claim(keys []string) (*manyLoad[V], map[string]*loadCall[V]) {
	r := &c.loads
	b := &manyLoad[V]{done: make(chan struct{})}
	var joined map[string]*loadCall[V]
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]*loadCall[V])
	}
	for _, k := range keys {
		if call, ok := r.m[k]; ok && c.joinable(call) {
			if joined == nil {
				joined = make(map[string]*loadCall[V])
			}
			joined[k] = call
			continue
		}
		// A load in flight that is not joinable stays registered only for
		// its own callers: this one replaces it for everyone after.
		call := &loadCall[V]{done: b.done, fence: c.l1.BeginFill(k)}
		r.m[k] = call
		b.keys = append(b.keys, k)
		b.calls = append(b.calls, call)
	}
	return b, joined
}

// claimOne is claim for one key: the call, and whether this caller owns it.
func (c *Cache[V]) claimOne(key string) (*loadCall[V], bool) {
	r := &c.loads
	r.mu.Lock()
	defer r.mu.Unlock()
	if call, ok := r.m[key]; ok && c.joinable(call) {
		return call, false
	}
	if r.m == nil {
		r.m = make(map[string]*loadCall[V])
	}
	call := &loadCall[V]{done: make(chan struct{}), fence: c.l1.BeginFill(key)}
	r.m[key] = call
	return call, true
}

// errNotAnswered is a bug guard: a claimed key left without a result.
var errNotAnswered = errors.New("tiered: internal error: key not answered")

// finish unregisters the keys of calls (all sharing done), then publishes
// their results. In that order: a caller that starts after the loader's
// callers have their result never joins this finished load (and never gets
// its error, or its value in place of a newer load or refresh).
func (r *loadRegistry[V]) finish(keys []string, calls []*loadCall[V], done chan struct{}) {
	for _, call := range calls {
		if call.e == nil && call.err == nil {
			call.err = errNotAnswered
		}
	}
	r.mu.Lock()
	for i, k := range keys {
		if r.m[k] == calls[i] {
			delete(r.m, k)
		}
	}
	r.mu.Unlock()
	close(done)
}

// sharedFlight is what a GetOrLoad flight runs: flight, unless a GetMany is
// already loading key, whose result it then takes.
func (c *Cache[V]) sharedFlight(ctx context.Context, key string, loader Loader[V]) (res any, err error) {
	if loader == nil {
		return c.flight(ctx, key, nil)
	}
	return c.claimed(key, func() (any, error) { return c.flight(ctx, key, loader) })
}

// claimed runs load as the one load of key in this process, registered so
// that a GetMany takes its result instead of loading key too; if a GetMany is
// loading key already, it takes that result instead of running load.
func (c *Cache[V]) claimed(key string, load func() (any, error)) (res any, err error) {
	call, owner := c.claimOne(key)
	if !owner {
		if !c.track() {
			return nil, ErrClosed
		}
		defer c.wg.Done()
		c.stats.loadsJoined.Add(1)
		<-call.done // a GetMany's load ends within LoadTimeout, and with Close
		if call.err != nil {
			return nil, call.err
		}
		return call.e, nil
	}
	defer func() {
		call.e, _ = res.(*entry[V])
		call.err = err
		c.loads.finish([]string{key}, []*loadCall[V]{call}, call.done)
	}()
	return load()
}

// fillWorkers bounds the concurrent L2 writes of one GetMany's loaded keys
// (DynamoDB has no conditional batch write: one UpdateItem per key).
const fillWorkers = 8

// loadMany is the load of a GetMany's claimed keys, on its own goroutine and
// a context detached from the caller's. It sets every call's result, then
// publishes them.
func (c *Cache[V]) loadMany(callerCtx context.Context, b *manyLoad[V], loader BatchLoader[V]) {
	defer c.wg.Done()
	defer c.loads.finish(b.keys, b.calls, b.done)
	ctx, cancel := c.loadCtx(callerCtx)
	defer cancel()
	defer func() {
		// A panic here would crash the process. Loaders and codecs have
		// their own guards (contain, decode, encode): this is for our bugs.
		if r := recover(); r != nil {
			perr := internalPanic("GetMany", r)
			for _, call := range b.calls {
				if call.e == nil && call.err == nil {
					call.err = perr
				}
			}
		}
		for _, call := range b.calls { // ErrClosed, ErrLoadTimeout
			call.err = c.loadErr(ctx, call.err)
		}
	}()

	// Fences first, then L1 again (a load that ended just before ours was
	// claimed may have filled it), then L2 for the rest.
	fences := make([]l1.Fence, len(b.keys))
	index := make(map[string]int, len(b.keys))
	var read []string
	var blocked []string // keys with a pending invalidation: not read, not filled in L2 (pending.go)
	for i, k := range b.keys {
		fences[i] = c.l1.BeginFill(k)
		if e, ok := c.peek(k); ok {
			b.calls[i].e = e
			continue
		}
		index[k] = i
		if c.pend.blocks(k) {
			blocked = append(blocked, k)
			continue
		}
		read = append(read, k)
	}
	if len(read)+len(blocked) == 0 {
		return
	}
	var corrupt map[string]bool // keys whose item BatchGet found malformed
	var items map[string]l2.Item
	var err error
	if len(read) > 0 {
		items, err = l2Call(c, func() (map[string]l2.Item, error) {
			return c.l2.BatchGet(ctx, read, l2.IncludeVacant(), l2.OnCorrupt(func(k string, _ error) {
				if corrupt == nil { // called on this goroutine, during BatchGet
					corrupt = make(map[string]bool)
				}
				corrupt[k] = true
			}))
		})
	}
	var unread map[string]bool // keys L2 could not answer
	var pe *l2.PartialError
	switch {
	case err == nil:
	case errors.As(err, &pe):
		unread = make(map[string]bool, len(pe.Keys))
		for _, k := range pe.Keys {
			unread[k] = true
		}
	default: // circuit open, or the first call failed
		unread = make(map[string]bool, len(read))
		for _, k := range read {
			unread[k] = true
		}
	}
	if len(blocked) > 0 {
		if unread == nil {
			unread = make(map[string]bool, len(blocked))
		}
		for _, k := range blocked {
			unread[k] = true
		}
		read = append(read, blocked...)
	}

	// What to load, and at which version each key may be filled in L2.
	type pending struct {
		i    int
		toL2 bool  // false: L2 could not be read, so do not write it either
		seen int64 // the version BatchGetItem saw: IfVersion
	}
	var load []pending
	for _, k := range read {
		i := index[k]
		it, ok := items[k]
		switch {
		case unread[k]:
			load = append(load, pending{i: i})
			continue
		case ok && !it.Vacant:
			if e, ok := c.fromItem(it); ok {
				c.stats.l2Hits.Add(1)
				c.fillL1(k, fences[i], e, int64(len(it.Value)), 0, it.ExpiresAt)
				b.calls[i].e = e
				continue
			}
			// Undecodable: load; its fill meets a live item and loses, as
			// GetOrLoad's does.
			c.stats.l2Corrupt.Add(1)
		case corrupt[k]:
			c.stats.l2Corrupt.Add(1) // malformed: BatchGet left it out
		default:
			c.stats.l2Misses.Add(1)
		}
		// An absent key (no item: version 0) or a vacant one (tombstone,
		// lease placeholder, expired: its version) is filled only over the
		// version seen, so a Set or Delete landing meanwhile makes it lose.
		load = append(load, pending{i: i, toL2: true, seen: it.Version})
	}
	if len(load) == 0 {
		return
	}

	capped := len(unread) > 0 || c.breaker.State() == gobreaker.StateOpen
	if capped {
		// Without L2 every node may reach the source: cap our share. The
		// slot is held for the loader call only.
		select {
		case c.outage <- struct{}{}:
		case <-ctx.Done():
			for _, p := range load {
				b.calls[p.i].err = ctx.Err()
			}
			return
		}
	}
	keys := make([]string, len(load))
	for j, p := range load {
		keys[j] = b.keys[p.i]
	}
	c.stats.loads.Add(1)
	c.stats.batchLoads.Add(1)
	c.stats.batchLoadKeys.Add(uint64(len(keys)))
	vals, ttl, err := callBatchLoader(ctx, keys, loader)
	if capped {
		<-c.outage
	}
	var perKey map[string]error
	var be *BatchError
	switch {
	case err == nil:
	case errors.As(err, &be):
		perKey = be.Errors
	case errors.Is(err, ErrNotFound):
		vals = nil // none of them exist
	default:
		c.stats.loadErrors.Add(1)
		if errors.Is(err, ErrLoaderPanic) {
			c.stats.loadPanics.Add(1)
		}
		for _, p := range load {
			b.calls[p.i].err = err
		}
		return
	}
	type fill struct {
		pending
		e      *entry[V]
		enc    []byte
		ttl    time.Duration // in L2
		l1Want time.Duration // in L1 (0: L1TTL)
		ver    int64
		err    error // from L2
	}
	valTTL, valL1 := c.ttls(ttl, false)
	negTTL, negL1 := c.ttls(0, true)
	fills := make([]fill, 0, len(load))
	failed := false
	for _, p := range load {
		k := b.keys[p.i]
		kerr := perKey[k]
		v, ok := vals[k]
		switch {
		case kerr != nil && !errors.Is(kerr, ErrNotFound):
			b.calls[p.i].err = kerr
			failed = true
		case ok && kerr == nil:
			enc, err := c.encode(v)
			if err != nil {
				b.calls[p.i].err = err
				continue
			}
			fills = append(fills, fill{pending: p, e: &entry[V]{value: v, fromSource: true}, enc: enc, ttl: valTTL, l1Want: valL1})
		case c.o.NegativeTTL > 0:
			fills = append(fills, fill{pending: p, e: &entry[V]{notFound: true, fromSource: true}, ttl: negTTL, l1Want: negL1})
		default: // not found, not cached
			b.calls[p.i].e = &entry[V]{notFound: true}
		}
	}
	if failed {
		c.stats.loadErrors.Add(1)
	}

	// L2 first (a few writes at a time), then L1, as GetOrLoad does.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(fillWorkers, len(fills)) {
		wg.Go(func() {
			for j := int(next.Add(1) - 1); j < len(fills); j = int(next.Add(1) - 1) {
				f := &fills[j]
				if !f.toL2 {
					continue
				}
				k := b.keys[f.i]
				f.ver, f.err = l2Store(c, k, f.enc, func() (int64, error) {
					return c.l2.Fill(ctx, k, f.enc, f.e.notFound, f.ttl, "", l2.IfVersion(f.seen))
				})
			}
		})
	}
	wg.Wait()
	for j := range fills {
		f := &fills[j]
		k := b.keys[f.i]
		b.calls[f.i].e = f.e
		switch {
		case !f.toL2:
			// L2 unavailable: keep the value in L1 only, fenced as usual.
		case f.err == nil:
			f.e.version = f.ver
		case errors.Is(f.err, l2.ErrConflict):
			// The key changed in the table while we loaded: no tier keeps
			// the load; the callers get the newer entry if the table has
			// one, else what the source said.
			c.stats.staleFillsDropped.Add(1)
			if cur, ok := c.newer(f.err); ok {
				b.calls[f.i].e = cur
			}
			continue
		case errors.Is(f.err, l2.ErrValueTooLarge):
			c.stats.l2TooLarge.Add(1)
		}
		c.fillL1(k, fences[f.i], f.e, int64(len(f.enc)), f.l1Want, time.Now().Add(f.ttl))
	}
}

// callBatchLoader runs loader and turns a panic or runtime.Goexit into
// *LoaderPanicError (see contain).
func callBatchLoader[V any](ctx context.Context, keys []string, loader BatchLoader[V]) (m map[string]V, ttl time.Duration, err error) {
	choice := &ttlChoice{}
	ctx = context.WithValue(ctx, ttlKey{}, choice)
	m, err = contain(func() (map[string]V, error) { return loader(ctx, keys) })
	return m, choice.ttl, err
}

package tiered

import (
	"context"
	"errors"
	"fmt"
	"sort"
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
	a := &batchAnswer[V]{found: make(map[string]V, len(keys))}
	miss := c.lookupMany(ctx, keys, loader, a)
	if len(miss) > 0 {
		if !c.track() {
			return nil, ErrClosed
		}
		owned, own, joined := c.joinMany(miss)
		if len(owned) > 0 {
			go c.flyMany(ctx, c.newFill(modeLoad, source[V]{many: loader}, owned...), own) // it calls c.wg.Done
		} else {
			c.wg.Done()
		}
		c.stats.loadsJoined.Add(uint64(len(joined)))
		if err := awaitFlights(ctx, own, joined); err != nil {
			return nil, err
		}
		for i, k := range owned {
			a.take(k, own[i].out)
		}
		for k, fl := range joined {
			a.take(k, fl.out)
		}
	}
	if a.errs != nil {
		return a.found, &BatchError{Errors: a.errs}
	}
	return a.found, nil
}

// batchAnswer is what a GetMany returns, being built.
type batchAnswer[V any] struct {
	found map[string]V
	errs  map[string]error
}

func (a *batchAnswer[V]) fail(k string, err error) {
	if a.errs == nil {
		a.errs = make(map[string]error)
	}
	a.errs[k] = err
}

// take records one key's outcome: not found is no error; a stale value (a
// GetOrLoad's StaleIfError) is in the map and its error in the BatchError.
func (a *batchAnswer[V]) take(k string, out outcome[V]) {
	v, err := out.result()
	switch {
	case err == nil:
		a.found[k] = v
	case errors.Is(err, ErrNotFound):
	default:
		if errors.Is(err, ErrStale) {
			a.found[k] = out.e.value
		}
		a.fail(k, err)
	}
}

// lookupMany answers from L1 what it can (starting refresh-ahead where due),
// fails bad keys, and returns the distinct keys left to fill.
func (c *Cache[V]) lookupMany(ctx context.Context, keys []string, loader BatchLoader[V], a *batchAnswer[V]) []string {
	seen := make(map[string]struct{}, len(keys))
	var miss []string
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		if e, ok := c.lookup(k); ok {
			if !e.notFound {
				a.found[k] = e.value
			}
			if e.refreshAt != 0 { // refresh-ahead is on
				c.refreshAhead(ctx, k, e, loader.one)
			}
			continue
		}
		if err := c.l2.CheckKey(k); err != nil {
			a.fail(k, err)
			continue
		}
		miss = append(miss, k)
	}
	return miss
}

// awaitFlights waits for the caller's own fill (its flights share one
// channel) and every flight it joined, or for ctx.
func awaitFlights[V any](ctx context.Context, own []*flight[V], joined map[string]*flight[V]) error {
	waits := make(map[chan struct{}]struct{}, 1+len(joined))
	if len(own) > 0 {
		waits[own[0].done] = struct{}{}
	}
	for _, fl := range joined {
		waits[fl.done] = struct{}{}
	}
	for ch := range waits {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// flyMany runs f, a GetMany's fill of the keys it owns (own[i] is
// f.jobs[i]'s flight), as fly runs one key's, and publishes every outcome.
func (c *Cache[V]) flyMany(callerCtx context.Context, f *fill[V], own []*flight[V]) {
	defer c.wg.Done()
	keys := make([]string, len(f.jobs))
	for i := range f.jobs {
		keys[i] = f.jobs[i].key
	}
	defer c.flights.end(keys, true, own)
	ctx := c.loadCtx(f, callerCtx)
	defer c.endLoad(f)
	f.ctx = ctx
	c.runFill(f)
	for i := range f.jobs {
		out := f.jobs[i].out
		out.err = c.loadErr(ctx, out.err) // ErrClosed, ErrLoadTimeout
		own[i].out = out
	}
}

package tiered

import (
	"context"
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Loader reads a key from the source of truth. It returns ErrNotFound (or an
// error wrapping it) when the key does not exist there; that answer is cached
// for NegativeTTL. Other errors are returned to every waiting caller and never
// cached. It runs on a context detached from the callers' (values kept,
// cancellation dropped) with its own LoadTimeout, so one caller giving up
// does not fail the others.
type Loader[V any] func(ctx context.Context, key string) (V, error)

type ttlKey struct{}

// ttlChoice is where a loader's SetTTL lands.
type ttlChoice struct{ ttl time.Duration }

// SetTTL, called from inside a Loader with the context it was given, sets the
// TTL of the entry being loaded in both tiers (capped by L1MaxTTL in L1). It
// does nothing on any other context.
func SetTTL(ctx context.Context, ttl time.Duration) {
	if c, ok := ctx.Value(ttlKey{}).(*ttlChoice); ok && ttl > 0 {
		c.ttl = ttl
	}
}

// source is what a fill loads from: a Loader of one key (GetOrLoad,
// refresh-ahead) or a BatchLoader (GetMany).
type source[V any] struct {
	one  Loader[V]
	many BatchLoader[V]
}

// callSource is the one place loaders are called, once for all of jobs. It
// runs the loader through contain (a panic or runtime.Goexit becomes
// *LoaderPanicError, never a crash), counts the call, and, while L2 is
// unavailable (capped, or the breaker open), takes one of MaxOutageLoads
// slots for the call only: every node may then reach the source. Each job
// is then either finished (its error; or not found and NegativeTTL < 0,
// an answer not to cache) or given an entry to store (loaded).
func (c *Cache[V]) callSource(ctx context.Context, src source[V], jobs []*job[V], capped bool) {
	if capped || c.breaker.State() == gobreaker.StateOpen {
		select {
		case c.outage <- struct{}{}:
			defer func() { <-c.outage }()
		case <-ctx.Done():
			for _, j := range jobs {
				j.finish(nil, ctx.Err())
			}
			return
		}
	}
	c.stats.loads.Add(1)
	choice := &ttlChoice{}
	lctx := context.WithValue(ctx, ttlKey{}, choice)
	var answer answerFunc[V]
	if src.one != nil {
		answer = callOne(lctx, src.one, jobs[0].key)
	} else {
		c.stats.batchLoads.Add(1)
		c.stats.batchLoadKeys.Add(uint64(len(jobs)))
		answer = callMany(lctx, src.many, jobs)
	}
	failed, panicked := false, false
	for _, j := range jobs {
		v, found, err := answer(j.key)
		if err != nil && !errors.Is(err, ErrNotFound) {
			j.finish(nil, err)
			failed, panicked = true, panicked || errors.Is(err, ErrLoaderPanic)
			continue
		}
		c.loaded(j, v, found, err, choice.ttl)
	}
	if failed {
		c.stats.loadErrors.Add(1)
	}
	if panicked {
		c.stats.loadPanics.Add(1)
	}
}

// answerFunc is one loader call's answer for each of its keys: the value
// and whether it was found, or the key's error.
type answerFunc[V any] func(key string) (V, bool, error)

func callOne[V any](ctx context.Context, loader Loader[V], key string) answerFunc[V] {
	v, err := contain(func() (V, error) { return loader(ctx, key) })
	return func(string) (V, bool, error) { return v, err == nil, err }
}

// callMany reads a BatchLoader's answer (see BatchLoader for its meaning).
func callMany[V any](ctx context.Context, loader BatchLoader[V], jobs []*job[V]) answerFunc[V] {
	keys := make([]string, len(jobs))
	for i, j := range jobs {
		keys[i] = j.key
	}
	m, err := contain(func() (map[string]V, error) { return loader(ctx, keys) })
	var be *BatchError
	switch {
	case err == nil:
	case errors.As(err, &be):
		return func(k string) (V, bool, error) {
			if kerr := be.Errors[k]; kerr != nil {
				var zero V
				return zero, false, kerr
			}
			v, ok := m[k]
			return v, ok, nil
		}
	case errors.Is(err, ErrNotFound):
		m = nil // none of them exist
	default:
		return func(string) (V, bool, error) {
			var zero V
			return zero, false, err
		}
	}
	return func(k string) (V, bool, error) {
		v, ok := m[k]
		return v, ok, nil
	}
}

// loaded turns one key's answer (a value, or not found) into the entry to
// store, with its lifetimes: ErrNotFound becomes a negative entry (unless
// NegativeTTL < 0: then the job is finished with the loader's answer, cached
// nowhere); a value the codec cannot encode fails the key.
func (c *Cache[V]) loaded(j *job[V], v V, found bool, err error, chosen time.Duration) {
	switch {
	case found:
		enc, err := c.encode(v)
		if err != nil {
			j.finish(nil, err)
			return
		}
		j.e, j.enc = &entry[V]{value: v, fromSource: true, sum: valueSum(enc)}, enc
	case c.o.NegativeTTL > 0:
		j.e = &entry[V]{notFound: true, fromSource: true, sum: valueSum(nil)}
	default:
		if err == nil {
			err = ErrNotFound
		}
		j.finish(nil, err)
		return
	}
	j.l2TTL, j.l1Want = c.ttl.forValue(chosen, j.e.notFound)
}

// contain runs fn, a user's loader, on a goroutine of its own and waits for
// it. A panic becomes *LoaderPanicError. runtime.Goexit cannot be stopped:
// it ends the goroutine it is called on, running its deferred calls. On the
// caller's goroutine it would end a singleflight flight without ever
// answering its waiters (DoChan's channel is then never written), so fn gets
// its own goroutine, and the deferred check below (fn neither returned nor
// panicked) answers for it with ErrLoaderGoexit. The goroutine always ends
// before contain returns.
func contain[T any](fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		normalReturn := false
		defer func() {
			if !normalReturn {
				if p := recover(); p != nil {
					r = result{err: &LoaderPanicError{Value: p}}
				} else { // neither returned nor panicked: runtime.Goexit
					r = result{err: &LoaderPanicError{Goexit: true}}
				}
			}
			done <- r
		}()
		r.v, r.err = fn()
		normalReturn = true
	}()
	r := <-done
	return r.v, r.err
}

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

// loaded is one loader call's answer, ready to store.
type loaded[V any] struct {
	e      *entry[V]
	enc    []byte        // the encoded value; nil for a negative entry
	ttl    time.Duration // its L2 lifetime
	l1Want time.Duration // its L1 lifetime (0: L1TTL)
}

// loadSource calls loader once and turns its answer into an entry to store:
// ErrNotFound becomes a negative entry (unless NegativeTTL < 0); any other
// error is counted and returned, as is a value the codec cannot encode. While
// L2 is unavailable (l2IsDown, or the breaker open) every node may reach the
// source, so the call takes one of MaxOutageLoads slots, for the call only.
func (c *Cache[V]) loadSource(ctx context.Context, key string, loader Loader[V], l2IsDown bool) (loaded[V], error) {
	capped := l2IsDown || c.breaker.State() == gobreaker.StateOpen
	if capped {
		select {
		case c.outage <- struct{}{}:
		case <-ctx.Done():
			return loaded[V]{}, ctx.Err()
		}
	}
	c.stats.loads.Add(1)
	v, chosen, err := callLoader(ctx, key, loader)
	if capped {
		<-c.outage
	}
	e := &entry[V]{value: v, fromSource: true}
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound) && c.o.NegativeTTL > 0:
		e = &entry[V]{notFound: true, fromSource: true}
	case errors.Is(err, ErrNotFound):
		// NegativeTTL < 0: an answer not to cache, not a failure.
		return loaded[V]{}, err
	default:
		c.stats.loadErrors.Add(1)
		if errors.Is(err, ErrLoaderPanic) {
			c.stats.loadPanics.Add(1)
		}
		return loaded[V]{}, err
	}
	ld := loaded[V]{e: e}
	if !e.notFound {
		if ld.enc, err = c.encode(v); err != nil {
			return loaded[V]{}, err
		}
	}
	ld.ttl, ld.l1Want = c.ttls(chosen, e.notFound)
	return ld, nil
}

// callLoader runs loader and turns a panic or runtime.Goexit into
// *LoaderPanicError.
func callLoader[V any](ctx context.Context, key string, loader Loader[V]) (v V, ttl time.Duration, err error) {
	choice := &ttlChoice{}
	ctx = context.WithValue(ctx, ttlKey{}, choice)
	v, err = contain(func() (V, error) { return loader(ctx, key) })
	return v, choice.ttl, err
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

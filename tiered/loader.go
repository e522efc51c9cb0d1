package tiered

import (
	"context"
	"time"
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

// callLoader runs loader and turns a panic into *LoaderPanicError.
func callLoader[V any](ctx context.Context, key string, loader Loader[V]) (v V, ttl time.Duration, err error) {
	choice := &ttlChoice{}
	ctx = context.WithValue(ctx, ttlKey{}, choice)
	defer func() {
		if r := recover(); r != nil {
			err = &LoaderPanicError{Value: r}
		}
	}()
	v, err = loader(ctx, key)
	return v, choice.ttl, err
}

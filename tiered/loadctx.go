package tiered

import (
	"context"
	"errors"
	"fmt"
)

// errLoadTimedOut is the cause of a load context that ran out of LoadTimeout.
var errLoadTimedOut = errors.New("tiered: LoadTimeout")

// loadCtx is the context of one shared load (a flight, a GetMany's load, a
// refresh): values's values, not its cancellation (one caller giving up does
// not fail the others), LoadTimeout, and Close. Its cause says which ended
// it, for loadErr.
func (c *Cache[V]) loadCtx(values context.Context) (context.Context, context.CancelFunc) {
	timed, cancelTimeout := context.WithTimeoutCause(context.WithoutCancel(values), c.o.LoadTimeout, errLoadTimedOut)
	ctx, cancel := context.WithCancelCause(timed)
	stop := context.AfterFunc(c.closeCtx, func() { cancel(ErrClosed) })
	return ctx, func() {
		stop()
		cancel(context.Canceled)
		cancelTimeout()
	}
}

// loadErr names the error of a load whose context (from loadCtx) ended: a
// context error becomes ErrClosed when Close ended it, or an error matching
// both ErrLoadTimeout and the original (context.DeadlineExceeded) when
// LoadTimeout did. Other errors are returned as they are.
func (c *Cache[V]) loadErr(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil ||
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, ErrClosed):
		return ErrClosed
	case errors.Is(cause, errLoadTimedOut):
		return fmt.Errorf("%w (%v): %w", ErrLoadTimeout, c.o.LoadTimeout, err)
	}
	return err
}

// internalPanic is a panic caught around a whole load: not the loader's
// (contain catches those) nor the codec's (decode, encode), so a bug of
// ours, still never a crash.
func internalPanic(where string, r any) error {
	return fmt.Errorf("tiered: internal error: panic in %s: %v", where, r)
}

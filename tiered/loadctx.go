package tiered

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// errLoadTimedOut is the cause of a load context that ran out of LoadTimeout.
var errLoadTimedOut = errors.New("tiered: LoadTimeout")

// loadCtx is the context of one fill (a Get's or GetOrLoad's, a GetMany's,
// a refresh): values's values, not its cancellation (one caller giving up
// does not fail the others), ended by Close.
//
// A fill that may load is bounded by LoadTimeout, whose cause says it ended
// it, for loadErr: Close ends it too, as the fill is registered in c.live
// until endLoad and Close cancels every fill registered. One context and one
// timer per fill; no goroutine, no AfterFunc on Close's context.
//
// A Get's fill calls no loader and waits on no lease: its L2 reads (one, or
// two when it reads again, see fly) are bounded by CallTimeout, each at most
// l2.HardTimeoutFactor x CallTimeout, and need no LoadTimeout. Its context
// is closeBound, held in f: no allocation, no timer, not registered. With no
// CallTimeout (negative) it gets LoadTimeout as every fill.
func (c *Cache[V]) loadCtx(f *fill[V], values context.Context) context.Context {
	var ctx context.Context
	if f.mode == modeGet && c.o.CallTimeout >= 0 {
		f.closing = closeBound{close: c.closeCtx, values: values}
		ctx = &f.closing
	} else {
		if _, dl := values.Deadline(); dl || values.Done() != nil {
			values = context.WithoutCancel(values)
		} // else nothing can end values (a Background): no wrapper needed
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(values, c.o.LoadTimeout, errLoadTimedOut)
		f.cancel = cancel
		c.live.mu.Lock()
		closed := c.live.closed
		if !closed {
			c.live.m[f] = cancel
		}
		c.live.mu.Unlock()
		if closed {
			cancel()
		}
	}
	if hook := c.o.OnMiss; hook != nil {
		ctx, f.onEnd = hook(ctx, MissInfo{Op: f.mode.String(), Keys: len(f.jobs)})
	}
	return ctx
}

// endLoad releases f's load context (and ends OnMiss's span, with the
// first error of f's keys).
func (c *Cache[V]) endLoad(f *fill[V]) {
	if f.onEnd != nil {
		var err error
		for i := range f.jobs {
			if err = f.jobs[i].out.err; err != nil {
				break
			}
		}
		f.onEnd(err)
	}
	if f.cancel == nil {
		return // closeBound: nothing to release
	}
	c.live.mu.Lock()
	delete(c.live.m, f)
	c.live.mu.Unlock()
	f.cancel()
}

// closeBound is the context of a Get's fill: values's values, and the
// cancellation of Close alone (c.closeCtx, a context.WithCancel of
// Background that holds no values). Its Value answers a key closeCtx
// answers first: the only such key is the one by which the context package
// finds the cancelCtx a Done channel belongs to, so that a context derived
// from this one (l2's call context) attaches to closeCtx's cancelCtx
// directly, with no goroutine and no list of children of its own.
type closeBound struct {
	close  context.Context
	values context.Context
}

func (x *closeBound) Deadline() (time.Time, bool) { return time.Time{}, false }
func (x *closeBound) Done() <-chan struct{}       { return x.close.Done() }
func (x *closeBound) Err() error                  { return x.close.Err() }

func (x *closeBound) Value(key any) any {
	if v := x.close.Value(key); v != nil {
		return v
	}
	return x.values.Value(key)
}

// liveFills are the fills in flight, for Close to cancel.
type liveFills[V any] struct {
	mu     sync.Mutex
	m      map[*fill[V]]context.CancelFunc
	closed bool
}

// cancelAll cancels every fill in flight, and every fill that registers
// from now on.
func (l *liveFills[V]) cancelAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for _, cancel := range l.m {
		cancel()
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
	switch {
	case errors.Is(context.Cause(ctx), errLoadTimedOut):
		return fmt.Errorf("%w (%v): %w", ErrLoadTimeout, c.o.LoadTimeout, err)
	case c.isClosed.Load(): // only Close cancels a load context otherwise
		return ErrClosed
	}
	return err
}

// internalPanic is a panic caught around a whole load: not the loader's
// (contain catches those) nor the codec's (decode, encode), so a bug of
// ours, still never a crash.
func internalPanic(where string, r any) error {
	return fmt.Errorf("tiered: internal error: panic in %s: %v", where, r)
}

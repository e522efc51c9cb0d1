package l1

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2"
)

// Cache is a byte-budgeted, TTL-bounded in-process cache of V by string key,
// on Ristretto v2, with a per-key fill fence. All methods are safe for
// concurrent use, Close included.
//
// Values are stored as they are: a Get returns the very V a Set stored
// (for pointer types, the same pointer). Callers must treat stored values as
// immutable.
type Cache[V any] struct {
	// Read-mostly fields used by Get, apart from everything writers write.
	rc         *ristretto.Cache[string, V]
	readers    []readerStripe
	readerMask uint32
	closed     atomic.Bool
	_          [readerStripeSize]byte

	opts   resolved
	fences []fenceStripe
	seed   maphash.Seed
	// epoch is bumped by Flush; a Fence taken before a Flush is stale.
	epoch atomic.Uint64
	_     [readerStripeSize - 8]byte

	// life orders Close after the calls that reach Ristretto without a
	// fence stripe lock (Wait, Stats).
	life      sync.RWMutex
	closeOnce sync.Once

	counters counters
}

// New returns a Cache configured by o (zero fields take their defaults). Bad
// options give an *OptionsError (errors.Is(err, ErrInvalidOptions)). The
// Cache runs Ristretto's goroutines until Close.
func New[V any](o Options) (*Cache[V], error) {
	r, err := o.resolve()
	if err != nil {
		return nil, err
	}
	c := &Cache[V]{
		opts:   r,
		fences: make([]fenceStripe, fenceStripes),
		seed:   maphash.MakeSeed(),
	}
	c.readers, c.readerMask = newReaderStripes()
	c.rc, err = ristretto.NewCache(&ristretto.Config[string, V]{
		NumCounters: r.numCounters,
		MaxCost:     r.maxBytes,
		BufferItems: r.bufferItems,
		// Costs are bytes we compute (len(key)+size+ItemOverhead), not
		// Ristretto's own guess of its per-item footprint.
		IgnoreInternalCost: true,
		// Metrics stay off: Ristretto's metrics put shared atomic adds on
		// every Get. We count hits ourselves, striped.
		Metrics:  false,
		OnEvict:  c.onEvict,
		OnReject: c.onReject,
	})
	if err != nil {
		// resolve checked every field Ristretto checks.
		return nil, &OptionsError{Field: "Options", Reason: err.Error()}
	}
	return c, nil
}

// Get returns the value stored for key and true, or the zero V and false if
// there is none, it has expired, or the Cache is closed.
//
// Get allocates nothing (beyond Ristretto's own amortised read-buffer batch,
// about one allocation per 64 Gets per P), takes no lock other than
// Ristretto's shard read lock, and writes no memory word shared by all
// cores: its counters are striped (see readers.go).
func (c *Cache[V]) Get(key string) (V, bool) {
	r := &c.readers[readerIndex()&c.readerMask]
	r.enters.Add(1)
	if c.closed.Load() {
		r.misses.Add(1)
		r.exits.Add(1)
		var zero V
		return zero, false
	}
	v, ok := c.rc.Get(key)
	if !ok {
		r.misses.Add(1)
	}
	r.exits.Add(1)
	return v, ok
}

// Peek is Get without counting a hit or a miss in Stats: for a caller's own
// bookkeeping reads (a re-check before a fill, a version comparison), so that
// the hit ratio counts only lookups made for a reader.
func (c *Cache[V]) Peek(key string) (V, bool) {
	r := &c.readers[readerIndex()&c.readerMask]
	r.enters.Add(1)
	r.peeks.Add(1)
	if c.closed.Load() {
		r.exits.Add(1)
		var zero V
		return zero, false
	}
	v, ok := c.rc.Get(key)
	r.exits.Add(1)
	return v, ok
}

// Wait blocks until every store Ristretto has buffered is applied. The
// write methods already return only once their own value is visible to Get
// (or known refused), so callers need Wait only to settle Ristretto's
// bookkeeping (costs, deletes) in tests. After Close it returns at once.
func (c *Cache[V]) Wait() {
	c.life.RLock()
	defer c.life.RUnlock()
	if !c.closed.Load() {
		c.rc.Wait()
	}
}

// Close stops Ristretto's goroutines and drops every entry. It is safe to
// call more than once and concurrently with any other method: calls that
// overlap Close either complete normally or behave as on a closed Cache
// (Get misses, writes return false, Stats reports no bytes). Every call to
// Close returns after the Cache is fully closed. It always returns nil.
func (c *Cache[V]) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		// Writers check closed under their stripe lock: once each lock
		// has been taken and released here, none is inside Ristretto and
		// none will enter it.
		for i := range c.fences {
			c.fences[i].mu.Lock()
			//nolint:staticcheck // an empty critical section is the point
			c.fences[i].mu.Unlock()
		}
		waitReaders(c.readers)
		c.life.Lock()
		defer c.life.Unlock()
		c.counters.clearing.Store(true)
		c.rc.Close()
	})
	return nil
}

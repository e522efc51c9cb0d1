package l1

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/tieredcache/tieredcache/internal/mono"
)

// Cache is a byte-budgeted, TTL-bounded in-process cache of V by string key,
// on Ristretto v2, with a per-key fill fence. All methods are safe for
// concurrent use, Close included.
//
// Values are stored as they are: a Get returns the very V a write stored
// (for pointer types, the same pointer). Callers must treat stored values as
// immutable.
type Cache[V any] struct {
	// Read-mostly fields used by Get, apart from everything writers write.
	rc         *ristretto.Cache[string, slot[V]]
	readers    []readerStripe
	readerMask uint32
	closed     atomic.Bool
	clock      func() int64 // nil: mono.Now
	_          [readerStripeSize]byte

	opts   resolved
	fences []fenceStripe
	seed   maphash.Seed
	// epoch is bumped by Flush; a Fence taken before a Flush is stale.
	epoch atomic.Uint64
	_     [readerStripeSize - 8]byte

	// life orders Close after the calls that reach Ristretto without a
	// fence stripe lock (Stats; Wait in tests).
	life      sync.RWMutex
	closeOnce sync.Once

	counters counters
}

// slot is what Ristretto stores for a key: the value and when it expires, on
// the Clock's scale. Ristretto's own TTLs are not used: they cost a wall-clock
// read (time.Now) on every Get of an entry that has one, while the caller of
// GetAt has usually read the clock already and shares that one reading.
type slot[V any] struct {
	v   V
	exp int64
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
		clock:  o.Clock,
	}
	c.readers, c.readerMask = newReaderStripes()
	c.rc, err = ristretto.NewCache(&ristretto.Config[string, slot[V]]{
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

// Now reads the Cache's clock (Options.Clock; by default the process's
// monotonic clock, internal/mono): nanoseconds on the scale GetAt, PeekAt and
// expiries use.
func (c *Cache[V]) Now() int64 {
	if c.clock != nil {
		return c.clock()
	}
	return mono.Now()
}

// Get returns the value stored for key and true, or the zero V and false if
// there is none, it has expired, or the Cache is closed. It is GetAt(key,
// c.Now()).
func (c *Cache[V]) Get(key string) (V, bool) { return c.GetAt(key, c.Now()) }

// GetAt is Get at time now, a reading of Now that the caller took (and may use
// for its own checks too, so that one clock read serves both): an entry whose
// expiry is not after now is not returned.
//
// GetAt allocates nothing (beyond Ristretto's own amortised read-buffer batch,
// about one allocation per 64 Gets per P), takes no lock other than
// Ristretto's shard read lock, and writes no memory word shared by all
// cores: its counters are striped (see readers.go).
func (c *Cache[V]) GetAt(key string, now int64) (V, bool) {
	r := &c.readers[readerIndex()&c.readerMask]
	r.enters.Add(1)
	if c.closed.Load() {
		r.misses.Add(1)
		r.exits.Add(1)
		var zero V
		return zero, false
	}
	s, ok := c.rc.Get(key)
	if ok && s.exp > now {
		r.exits.Add(1)
		return s.v, true
	}
	r.misses.Add(1)
	r.exits.Add(1)
	if ok {
		c.dropExpired(key, now)
	}
	var zero V
	return zero, false
}

// Peek is Get without counting a hit or a miss in Stats: for a caller's own
// bookkeeping reads (a re-check before a fill, a version comparison), so that
// the hit ratio counts only lookups made for a reader.
func (c *Cache[V]) Peek(key string) (V, bool) { return c.PeekAt(key, c.Now()) }

// PeekAt is Peek at time now (see GetAt).
func (c *Cache[V]) PeekAt(key string, now int64) (V, bool) {
	r := &c.readers[readerIndex()&c.readerMask]
	r.enters.Add(1)
	r.peeks.Add(1)
	if c.closed.Load() {
		r.exits.Add(1)
		var zero V
		return zero, false
	}
	s, ok := c.rc.Get(key)
	r.exits.Add(1)
	if !ok || s.exp <= now {
		var zero V
		return zero, false
	}
	return s.v, true
}

// dropExpired removes key's entry if it is still the one that expired by
// now, so that expired entries give their budget back without waiting for
// Ristretto to evict them. Under the stripe lock, as every write: a write of
// key racing this one is never undone.
func (c *Cache[V]) dropExpired(key string, now int64) {
	_, st, ok := c.lock(key)
	if !ok {
		return
	}
	defer st.mu.Unlock()
	if s, ok := c.rc.Get(key); ok && s.exp <= now {
		c.rc.Del(key)
		c.counters.expirations.Add(1)
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
			//lint:ignore SA2001 an empty critical section is the point: it waits out writers inside
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

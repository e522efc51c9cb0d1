package tiered

import (
	"sync/atomic"
	"time"

	"github.com/tieredcache/tieredcache/internal/mono"
)

// TestClock is a clock for tests: the process's monotonic clock plus an
// offset that Advance moves forward. A Cache built with it (SetTestClock)
// reads it everywhere it would read internal/mono: L1 expiry, trust on the
// hit path, stamps, refresh-ahead and its stream consumer. Advance is a jump
// of the process's clock: entries age by d at once, and the consumer's trust
// deadline, computed from the same clock, moves with its next poll.
type TestClock struct{ off atomic.Int64 }

// Now returns the clock's reading in nanoseconds, on mono.Now's scale.
func (c *TestClock) Now() int64 { return mono.Now() + c.off.Load() }

// Advance moves the clock forward by d.
func (c *TestClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// SetTestClock makes the Cache that New builds from o read clock.
func SetTestClock[V any](o *Options[V], clock *TestClock) { o.clock = clock.Now }

// Store is the table a Cache uses (store.go): *l2.Table in production,
// internal/memstore in tests that run without DynamoDB Local.
type Store = store

// SetTestStore makes the Cache that New builds from o use the table
// newStore returns, given the node's writer mark and its wall clock (nil:
// time.Now; the test clock's when SetTestClock is used too), instead of a
// DynamoDB table. New then makes no AWS call. It sets DisableInvalidation:
// such a table has no stream.
func SetTestStore[V any](o *Options[V], newStore func(writer string, now func() time.Time) Store) {
	o.testStore = newStore
	o.DisableInvalidation = true
}

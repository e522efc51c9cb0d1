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

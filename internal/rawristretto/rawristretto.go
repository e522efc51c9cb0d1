// Package rawristretto builds the baseline the L1 benchmarks compare with
// (bench's BenchmarkL1Hit and bench/peers): Ristretto configured as l1
// configures it for tiered's defaults, without l1 around it.
package rawristretto

import (
	"fmt"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/tieredcache/tieredcache/l1"
	"github.com/tieredcache/tieredcache/tiered"
)

// Resident returns a Ristretto cache configured as l1 configures its own for
// tiered's defaults (byte budget DefaultL1MaxBytes, cost = key + value +
// l1.DefaultItemOverhead with IgnoreInternalCost, NumCounters derived as l1
// derives it, l1.DefaultBufferItems, metrics off), holding every key with
// Ristretto's own TTL ttl (0: none). l1's OnEvict/OnReject callbacks are
// left out: they run only when Ristretto evicts or refuses. Ristretto may
// drop a Set under contention, so keys are set again until every one is
// resident, at most 10 rounds; the caller closes the cache.
func Resident(keys []string, values [][]byte, ttl time.Duration) (*ristretto.Cache[string, []byte], error) {
	c, err := ristretto.NewCache(&ristretto.Config[string, []byte]{
		NumCounters:        10 * max(tiered.DefaultL1MaxBytes/l1.AssumedItemSize, 1),
		MaxCost:            tiered.DefaultL1MaxBytes,
		BufferItems:        l1.DefaultBufferItems,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		missing := 0
		for i, k := range keys {
			if _, ok := c.Get(k); !ok {
				missing++
				c.SetWithTTL(k, values[i], int64(len(k)+len(values[i]))+l1.DefaultItemOverhead, ttl)
			}
		}
		c.Wait()
		if missing == 0 {
			return c, nil
		}
		if attempt == 10 {
			c.Close()
			return nil, fmt.Errorf("raw Ristretto: %d keys still not resident after %d attempts", missing, attempt)
		}
	}
}

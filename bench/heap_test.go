package bench

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/tiered"
)

// BenchmarkL1HeapVsBudget measures what an L1 full of 1 KB values really
// holds against its byte budget (issue: "the L1 budget accounts for what an
// entry really holds"): it fills an L1 of heapBudget bytes well past its
// budget, then reports the live heap the cache holds (after a GC, minus the
// heap before the fill) divided by L1MaxBytes:
//
//	heap/budget-loaded  values stored by a loader (the caller's own slices)
//	heap/budget-l2      values filled from L2 (the SDK's decoded slices)
//
// Each b.N iteration is one whole fill; run it with -benchtime 1x.
func BenchmarkL1HeapVsBudget(b *testing.B) {
	const (
		heapBudget = 8 << 20
		valueSize  = 1024
	)
	keys := 3 * heapBudget / valueSize // three times what fits: steady state is a full L1
	cfg := awsConfig(b)
	table := dynamolocal.TableName(b)
	ctx := context.Background()
	value := func(i int) []byte {
		v := make([]byte, valueSize)
		for j := range v {
			v[j] = byte(i + j)
		}
		return v
	}
	measure := func(fill func(c *tiered.Cache[[]byte]) error) float64 {
		c, _ := newNode(b, cfg, table, func(o *tiered.Options[[]byte]) {
			o.DisableInvalidation = true
			o.L1MaxBytes = heapBudget
		})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if err := fill(c); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(c)
		return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / heapBudget
	}
	key := func(i int) string { return fmt.Sprintf("heap/key/%07d", i) }
	var loaded, fromL2 float64
	for range b.N {
		loaded = measure(func(c *tiered.Cache[[]byte]) error {
			for i := range keys {
				if _, err := c.GetOrLoad(ctx, key(i), func(context.Context, string) ([]byte, error) { return value(i), nil }); err != nil {
					return err
				}
			}
			return nil
		})
		// The keys are in L2 now: a fresh node fills its L1 from there.
		fromL2 = measure(func(c *tiered.Cache[[]byte]) error {
			for i := range keys {
				if _, err := c.Get(ctx, key(i)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	b.ReportMetric(loaded, "heap/budget-loaded")
	b.ReportMetric(fromL2, "heap/budget-l2")
}

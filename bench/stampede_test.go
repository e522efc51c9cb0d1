package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/tiered"
)

// stampedeLoadTime is how long the loader takes: a source slower than L2, so
// that callers keep arriving while the load is in flight.
const stampedeLoadTime = 5 * time.Millisecond

// BenchmarkColdStampede: per iteration, G goroutines (TC_STAMPEDE_G, default
// 1000) call GetOrLoad on one key nobody has read before, released at the
// same instant. The node runs as deployed (stream consumer and leases on).
// Reported:
//
//	ns/op              one stampede, from release until every caller has its value
//	l2reads/stampede   GetItem/BatchGetItem requests DynamoDB saw (SDK middleware), mean; target 1
//	loads/stampede     loader calls, mean; target 1
//	max-l2reads        the most L2 reads any single stampede caused
//	max-loads          the most loader calls any single stampede caused
//	l2calls/stampede   all DynamoDB requests (lease, fill included), mean
func BenchmarkColdStampede(b *testing.B) {
	g := envInt("TC_STAMPEDE_G", 1000)
	cfg := awsConfig(b)
	c, ops := newNode[string](b, cfg, dynamolocal.TableName(b), nil)
	var (
		loads atomic.Int64
		iter  int // keys stay unique across the framework's runs of the sub-benchmark
	)
	loader := func(_ context.Context, key string) (string, error) {
		loads.Add(1)
		time.Sleep(stampedeLoadTime)
		return "v:" + key, nil
	}
	ctx := context.Background()
	if _, err := c.GetOrLoad(ctx, "stampede/warm-up", loader); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	b.Run(fmt.Sprintf("G=%d", g), func(b *testing.B) {
		benchStampede(b, g, c, ops, loader, &loads, &iter)
	})
}

func benchStampede(b *testing.B, g int, c *tiered.Cache[string], ops *opCounter,
	loader tiered.Loader[string], loads *atomic.Int64, iter *int) {
	ctx := context.Background()

	var (
		totalReads, totalLoads, totalCalls int64
		maxReads, maxLoads                 int64
		failures                           atomic.Int64
	)
	allCalls := func() int64 {
		return ops.get("GetItem") + ops.get("BatchGetItem") + ops.get("UpdateItem") + ops.get("PutItem")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		key := fmt.Sprintf("stampede/%d", *iter)
		*iter++
		want := "v:" + key
		reads0, loads0, calls0 := ops.reads(), loads.Load(), allCalls()
		start := make(chan struct{})
		var ready, done sync.WaitGroup
		ready.Add(g)
		done.Add(g)
		for range g {
			go func() {
				defer done.Done()
				ready.Done()
				<-start
				if v, err := c.GetOrLoad(ctx, key, loader); err != nil || v != want {
					failures.Add(1)
				}
			}()
		}
		ready.Wait()
		b.StartTimer()
		close(start)
		done.Wait()
		b.StopTimer()
		r, l := ops.reads()-reads0, loads.Load()-loads0
		totalReads, totalLoads, totalCalls = totalReads+r, totalLoads+l, totalCalls+allCalls()-calls0
		maxReads, maxLoads = max(maxReads, r), max(maxLoads, l)
		b.StartTimer()
	}
	if f := failures.Load(); f > 0 {
		b.Errorf("%d GetOrLoad calls failed or returned a wrong value", f)
	}
	n := float64(b.N)
	b.ReportMetric(float64(totalReads)/n, "l2reads/stampede")
	b.ReportMetric(float64(totalLoads)/n, "loads/stampede")
	b.ReportMetric(float64(totalCalls)/n, "l2calls/stampede")
	b.ReportMetric(float64(maxReads), "max-l2reads")
	b.ReportMetric(float64(maxLoads), "max-loads")
}

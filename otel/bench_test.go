package tieredotel_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	tieredotel "github.com/tieredcache/tieredcache/otel"
	"github.com/tieredcache/tieredcache/tiered"
)

// BenchmarkL1Hit: parallel GetOrLoad L1 hits on a cache with nothing of this
// module (plain) and on one registered (a collection between runs), with an
// instrumented DynamoDB client and loader (instrumented), in one process.
// Both must be 0 allocs/op and report no L1 miss; ns/op should match within
// noise: the registered callback runs at collection only.
func BenchmarkL1Hit(b *testing.B) {
	const keys = 1024
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) }()
	opts := []tieredotel.Option{tieredotel.WithTracerProvider(tp), tieredotel.WithMeterProvider(mp)}
	noStream := func(o *tiered.Options[string]) { o.DisableInvalidation = true }
	ctx := context.Background()
	names := make([]string, keys)
	for i := range names {
		names[i] = "key-" + strconv.Itoa(i)
	}
	for _, instrumented := range []bool{false, true} {
		name := "plain"
		var c *tiered.Cache[string]
		loader := tiered.Loader[string](func(_ context.Context, k string) (string, error) { return "v" + k, nil })
		if instrumented {
			name = "instrumented"
			c = newCache(b, noStream, opts)
			unregister, err := tieredotel.Register(c, mp)
			if err != nil {
				b.Fatal(err)
			}
			defer unregister()
			loader = tieredotel.InstrumentLoader(loader, opts...)
		} else {
			c = newCache(b, noStream, nil)
		}
		for _, k := range names { // warm: every key answered by L1
			waitFor(b, 30*time.Second, "an L1 hit", func() bool {
				before := c.Stats().L1.Hits
				_, _ = c.GetOrLoad(ctx, k, loader)
				return c.Stats().L1.Hits > before
			})
		}
		b.Run(name, func(b *testing.B) {
			if instrumented {
				collect(b, reader)
			}
			misses := c.Stats().L1.Misses
			var seq atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := seq.Add(7919)
				for pb.Next() {
					i++
					if _, err := c.GetOrLoad(ctx, names[i%keys], loader); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			if d := c.Stats().L1.Misses - misses; d != 0 {
				b.Fatalf("%d L1 misses during the benchmark", d)
			}
		})
	}
}

package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/tiered"
)

const (
	l2HitKeys      = 256
	l2HitValueSize = 128
	// l2HitL1TTL makes every L1 entry expire before anyone can read it, so
	// each Get misses L1 and is answered by L2, through the same code as any
	// other L2 hit (the fill still happens; it just does not last).
	l2HitL1TTL = time.Microsecond
)

// BenchmarkL2Hit measures Get when L1 misses and L2 hits: a reader node
// (stream consumer on, as deployed) whose L1 entries expire at once reads keys
// that a writer node stored in the table. Sub-benchmarks:
//
//	serial    one caller: the latency of an L2 hit (DynamoDB Local GetItem
//	          on loopback dominates)
//	parallel  8 callers per CPU on distinct keys: throughput under load
//
// Each reports ns/op, allocs/op, l2reads/op (GetItem requests DynamoDB saw,
// counted by an SDK middleware; expected 1) and l2hits/op (the cache's own
// count; expected 1: a lower figure means L1 served some Gets).
func BenchmarkL2Hit(b *testing.B) {
	cfg := awsConfig(b)
	table := dynamolocal.TableName(b)
	keys := make([]string, l2HitKeys)
	value := make([]byte, l2HitValueSize)
	for i := range keys {
		keys[i] = fmt.Sprintf("l2hit/key/%06d", i)
	}
	writer, _ := newNode(b, cfg, table, func(o *tiered.Options[[]byte]) { o.DisableInvalidation = true })
	ctx := setupContext(b)
	if err := parallelDo(len(keys), 16, func(i int) error { return writer.Set(ctx, keys[i], value) }); err != nil {
		b.Fatalf("writing keys: %v", err)
	}
	reader, ops := newNode(b, cfg, table, func(o *tiered.Options[[]byte]) {
		o.L1TTL = l2HitL1TTL
	})
	for _, k := range keys[:8] { // connections up, code paths warm
		if _, err := reader.Get(ctx, k); err != nil {
			b.Fatalf("warm-up Get: %v", err)
		}
	}

	report := func(b *testing.B, reads0 int64, hits0 uint64) {
		n := float64(b.N)
		b.ReportMetric(float64(ops.reads()-reads0)/n, "l2reads/op")
		b.ReportMetric(float64(reader.Stats().L2.Hits-hits0)/n, "l2hits/op")
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		reads0, hits0 := ops.reads(), reader.Stats().L2.Hits
		ctx := context.Background()
		i := 0
		for b.Loop() {
			if _, err := reader.Get(ctx, keys[i%len(keys)]); err != nil {
				b.Fatalf("Get: %v", err)
			}
			i++
		}
		report(b, reads0, hits0)
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		reads0, hits0 := ops.reads(), reader.Stats().L2.Hits
		ctx := context.Background()
		var next atomic.Int64
		var failed atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			// Goroutines start far apart in the key ring so that concurrent
			// Gets rarely share a key (which would collapse into one read).
			i := int(next.Add(1)) * 31
			for pb.Next() {
				if _, err := reader.Get(ctx, keys[i%len(keys)]); err != nil {
					failed.Add(1)
				}
				i++
			}
		})
		if f := failed.Load(); f > 0 {
			b.Fatalf("%d Gets failed", f)
		}
		report(b, reads0, hits0)
	})
}

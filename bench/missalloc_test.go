package bench

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

// BenchmarkMissAllocs compares, in one run and on one table, the allocations
// of a tiered Get that misses L1 and is answered by L2 with those of the one
// raw GetItem (same client settings, same item) that answers it. It reports
// allocs/op and bytes/op of each and their ratios (miss/raw, the issue's
// target <= 1.05; bytes-miss/raw), for two kinds of caller context, both
// sides alike:
//
//   - background: context.Background, which nothing can end (the Get fills
//     on the caller's goroutine);
//   - cancel: a fresh context.WithCancel per call, cancelled after it, as an
//     HTTP handler's request context is (the Get fills on a goroutine of its
//     own, so that the caller can give up).
//
// The reader node runs without a stream consumer, so that its background
// polls do not count against the Gets, and on a client without the
// benchmarks' op counter, as the raw calls; L1 entries expire at once, so
// every Get misses L1 and fills it again, as any L2 hit does.
func BenchmarkMissAllocs(b *testing.B) {
	keys := make([]string, l2HitKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("missalloc/key/%06d", i)
	}
	table, reader, raw, pks := allocSetup(b, keys, l2HitValueSize)
	for _, cancellable := range []bool{false, true} {
		name := "background"
		if cancellable {
			name = "cancel"
		}
		b.Run(name, func(b *testing.B) {
			i := 0
			// callCtx is the caller's context of one call, and its end.
			callCtx := func() (context.Context, context.CancelFunc) {
				if cancellable {
					return context.WithCancel(context.Background())
				}
				return context.Background(), func() {}
			}
			get := func() {
				ctx, cancel := callCtx()
				defer cancel()
				if _, err := reader.Get(ctx, keys[i%len(keys)]); err != nil {
					b.Fatalf("Get: %v", err)
				}
				i++
			}
			rawGet := func() {
				ctx, cancel := callCtx()
				defer cancel()
				out, err := raw.GetItem(ctx, &dynamodb.GetItemInput{
					TableName:      aws.String(table),
					Key:            map[string]types.AttributeValue{l2.PartitionKeyAttr: &types.AttributeValueMemberS{Value: pks[i%len(pks)]}},
					ConsistentRead: aws.Bool(true), // as the cache reads
				})
				if err != nil || len(out.Item) == 0 {
					b.Fatalf("GetItem: %v (%d attributes)", err, len(out.Item))
				}
				i++
			}
			for range 16 { // connections up, code paths warm
				get()
				rawGet()
			}
			const runs = 200
			rawCost := measureAllocs(runs, rawGet)
			missCost := measureAllocs(runs, get)
			b.ReportAllocs()
			for b.Loop() {
				get()
			}
			b.ReportMetric(rawCost.allocs, "raw-allocs/op")
			b.ReportMetric(missCost.allocs, "miss-allocs/op")
			b.ReportMetric(missCost.allocs/rawCost.allocs, "miss/raw")
			b.ReportMetric(missCost.bytes/rawCost.bytes, "bytes-miss/raw")
		})
	}
}

// BenchmarkGetManyAllocs compares, in one run and on one table, a GetMany of
// getManyKeys keys that all miss L1 and hit L2 (1 KB values) with the one raw
// BatchGetItem of the same keys that answers it (same client settings). It
// reports, per call, the raw call's allocations and bytes, and the ratios
// GetMany ÷ raw of bytes (the target <= 1.2), allocations, and CPU
// time of this process (getrusage: user + system; DynamoDB Local runs in
// another process).
func BenchmarkGetManyAllocs(b *testing.B) {
	const (
		getManyKeys = l2.MaxBatchKeys
		valueSize   = 1024
	)
	keys := make([]string, getManyKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("getmanyalloc/key/%04d", i)
	}
	table, reader, raw, pks := allocSetup(b, keys, valueSize)
	bg := context.Background()
	loader := func(_ context.Context, ks []string) (map[string][]byte, error) {
		return nil, fmt.Errorf("loader called for %d keys: L2 holds them all", len(ks))
	}
	getMany := func() {
		if m, err := reader.GetMany(bg, keys, loader); err != nil || len(m) != len(keys) {
			b.Fatalf("GetMany: %d values, %v", len(m), err)
		}
	}
	rawBatch := func() {
		ks := make([]map[string]types.AttributeValue, len(pks))
		for i, pk := range pks {
			ks[i] = map[string]types.AttributeValue{l2.PartitionKeyAttr: &types.AttributeValueMemberS{Value: pk}}
		}
		out, err := raw.BatchGetItem(bg, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
			table: {Keys: ks, ConsistentRead: aws.Bool(true)}}}) // as the cache reads
		if err != nil || len(out.Responses[table]) != len(keys) || len(out.UnprocessedKeys) != 0 {
			b.Fatalf("BatchGetItem: %v", err)
		}
	}
	for range 4 { // connections up, code paths warm
		getMany()
		rawBatch()
	}
	const runs = 30
	// Raw and GetMany alternate, in rounds, so that drift on a shared
	// machine falls on both alike.
	var rawCost, manyCost cost
	for range 3 {
		rawCost = rawCost.add(measureAllocs(runs, rawBatch))
		manyCost = manyCost.add(measureAllocs(runs, getMany))
	}
	b.ReportAllocs()
	for b.Loop() {
		getMany()
	}
	b.ReportMetric(rawCost.allocs/3, "raw-allocs/op")
	b.ReportMetric(rawCost.bytes/3, "raw-B/op")
	b.ReportMetric(manyCost.bytes/rawCost.bytes, "bytes-many/raw")
	b.ReportMetric(manyCost.allocs/rawCost.allocs, "allocs-many/raw")
	b.ReportMetric(float64(manyCost.cpu)/float64(rawCost.cpu), "cpu-many/raw")
}

// cost is what one call costs this process, averaged over a run.
type cost struct {
	allocs, bytes float64
	cpu           time.Duration
}

func (c cost) add(d cost) cost {
	return cost{allocs: c.allocs + d.allocs, bytes: c.bytes + d.bytes, cpu: c.cpu + d.cpu}
}

// measureAllocs runs f runs times and returns its cost per run: heap
// allocations and bytes (runtime.MemStats, every goroutine of the process,
// so the SDK's and the HTTP transport's goroutines count, on both sides
// alike) and CPU time (getrusage).
func measureAllocs(runs int, f func()) cost {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cpu0 := cpuTime()
	for range runs {
		f()
	}
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&after)
	n := float64(runs)
	return cost{
		allocs: float64(after.Mallocs-before.Mallocs) / n,
		bytes:  float64(after.TotalAlloc-before.TotalAlloc) / n,
		cpu:    cpu / time.Duration(runs),
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// encodeKeys returns the partition key values of keys in table.
func encodeKeys(b *testing.B, client *dynamodb.Client, table string, keys []string) []string {
	codec, err := l2.New(l2.Options{Client: client, Table: table}) // for the key encoding only
	if err != nil {
		b.Fatal(err)
	}
	pks := make([]string, len(keys))
	for i, k := range keys {
		if pks[i], err = codec.EncodeKey(k); err != nil {
			b.Fatal(err)
		}
	}
	return pks
}

// allocSetup writes keys (values of valueSize bytes) to a new table through
// one node, and returns the table, a reader node (no stream consumer; L1
// entries expire at once, so every read misses L1; on a client without the
// benchmarks' op counter, as raw's), a raw client, and keys' partition keys.
func allocSetup(b *testing.B, keys []string, valueSize int) (table string, reader *tiered.Cache[[]byte], raw *dynamodb.Client, pks []string) {
	cfg := awsConfig(b)
	table = dynamolocal.TableName(b)
	value := make([]byte, valueSize)
	writer, _ := newNode(b, cfg, table, func(o *tiered.Options[[]byte]) { o.DisableInvalidation = true })
	ctx := setupContext(b)
	if err := parallelDo(len(keys), 16, func(i int) error { return writer.Set(ctx, keys[i], value) }); err != nil {
		b.Fatalf("writing keys: %v", err)
	}
	reader, _ = newNode(b, cfg, table, func(o *tiered.Options[[]byte]) {
		o.DisableInvalidation = true
		o.L1TTL = l2HitL1TTL
		o.DynamoDB = l2.NewClient(cfg) // as raw's: no op counter
	})
	raw = l2.NewClient(cfg)
	return table, reader, raw, encodeKeys(b, raw, table, keys)
}

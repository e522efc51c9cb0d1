package bench

import (
	"context"
	"fmt"
	"testing"

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
// allocs/op of each and their ratio (miss/raw; the target is <= 1.05). The
// reader node runs without a stream consumer, so that its background polls
// do not count against the Gets; L1 entries expire at once, so every Get
// misses L1 and fills it again, as any L2 hit does.
func BenchmarkMissAllocs(b *testing.B) {
	cfg := awsConfig(b)
	table := dynamolocal.TableName(b)
	keys := make([]string, l2HitKeys)
	value := make([]byte, l2HitValueSize)
	for i := range keys {
		keys[i] = fmt.Sprintf("missalloc/key/%06d", i)
	}
	writer, _ := newNode(b, cfg, table, func(o *tiered.Options[[]byte]) { o.DisableInvalidation = true })
	ctx := setupContext(b)
	if err := parallelDo(len(keys), 16, func(i int) error { return writer.Set(ctx, keys[i], value) }); err != nil {
		b.Fatalf("writing keys: %v", err)
	}
	reader, _ := newNode(b, cfg, table, func(o *tiered.Options[[]byte]) {
		o.DisableInvalidation = true
		o.L1TTL = l2HitL1TTL
	})
	raw := l2.NewClient(cfg)
	codec, err := l2.New(l2.Options{Client: raw, Table: table}) // for the key encoding only
	if err != nil {
		b.Fatal(err)
	}
	pks := make([]string, len(keys))
	for i, k := range keys {
		if pks[i], err = codec.EncodeKey(k); err != nil {
			b.Fatal(err)
		}
	}
	bg := context.Background()
	i := 0
	get := func() {
		if _, err := reader.Get(bg, keys[i%len(keys)]); err != nil {
			b.Fatalf("Get: %v", err)
		}
		i++
	}
	rawGet := func() {
		out, err := raw.GetItem(bg, &dynamodb.GetItemInput{
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
	rawAllocs := testing.AllocsPerRun(runs, rawGet)
	missAllocs := testing.AllocsPerRun(runs, get)
	b.ReportAllocs()
	for b.Loop() {
		get()
	}
	b.ReportMetric(rawAllocs, "raw-allocs/op")
	b.ReportMetric(missAllocs, "miss-allocs/op")
	b.ReportMetric(missAllocs/rawAllocs, "miss/raw")
}

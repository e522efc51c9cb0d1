package compress_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/compress"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

func TestMain(m *testing.M) { dynamolocal.Main(m) }

func newCache(t *testing.T, table string, codec tiered.Codec[Page]) *tiered.Cache[Page] {
	t.Helper()
	cfg := dynamolocal.AWSConfig(dynamolocal.ForTest(t).Endpoint())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := tiered.New(ctx, tiered.Options[Page]{
		Table: table, Namespace: "pages", CreateTable: true, AWS: &cfg, Codec: codec,
		DisableInvalidation: true, CallTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// storedValue reads the raw v attribute of key's item.
func storedValue(t *testing.T, table, key string) []byte {
	t.Helper()
	ddb := dynamodb.NewFromConfig(dynamolocal.AWSConfig(dynamolocal.ForTest(t).Endpoint()))
	out, err := ddb.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String(table), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{l2.PartitionKeyAttr: &types.AttributeValueMemberS{Value: "pages#" + key}},
	})
	if err != nil {
		t.Fatal(err)
	}
	v, ok := out.Item[l2.ValueAttr].(*types.AttributeValueMemberB)
	if !ok {
		t.Fatalf("item %q has no B value: %v", key, out.Item)
	}
	return v.Value
}

// A cache that turns compression on reads what was written before, through
// DynamoDB Local; what it writes is compressed in the table.
func TestEnablingCompressionOnAFilledTable(t *testing.T) {
	table := dynamolocal.TableName(t)
	ctx := context.Background()
	old := newCache(t, table, nil) // JSON, uncompressed
	legacy := realisticJSON(10<<10, 1)
	if err := old.Set(ctx, "legacy", legacy); err != nil {
		t.Fatal(err)
	}

	codec, err := compress.JSON[Page](compress.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := newCache(t, table, codec)
	noLoad := func(context.Context, string) (Page, error) {
		return Page{}, errors.New("loader must not run: L2 has the key")
	}
	got, err := c.GetOrLoad(ctx, "legacy", noLoad)
	if err != nil || !reflect.DeepEqual(got, legacy) {
		t.Fatalf("legacy value through the compressing codec: %v", err)
	}

	big := realisticJSON(100<<10, 2)
	if err := c.Set(ctx, "big", big); err != nil {
		t.Fatal(err)
	}
	raw, _ := tiered.JSONCodec[Page]{}.Encode(big)
	stored := storedValue(t, table, "big")
	if stored[0] != compress.HeaderZstd || len(stored)*3 > len(raw) {
		t.Fatalf("stored %d B (header %#x) for %d B of JSON: want zstd, at least 3x smaller", len(stored), stored[0], len(raw))
	}
	t.Logf("100 KB page: %d B of JSON stored as %d B", len(raw), len(stored))

	// A fresh node (empty L1) reads it back from L2.
	fresh := newCache(t, table, codec)
	got, err = fresh.GetOrLoad(ctx, "big", func(context.Context, string) (Page, error) { return Page{}, errors.New("loader must not run") })
	if err != nil || !reflect.DeepEqual(got, big) {
		t.Fatalf("compressed value read back: %v", err)
	}
	if st := fresh.Stats(); st.L2.Hits != 1 || st.L2.Corrupt != 0 {
		t.Fatalf("stats: L2Hits %d, L2Corrupt %d; want 1, 0", st.L2.Hits, st.L2.Corrupt)
	}
}

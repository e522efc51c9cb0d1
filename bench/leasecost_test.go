package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

// BenchmarkLeasedFillCost measures what one cold key costs the table when
// one node loads it under a lease (GetOrLoad of a key no tier holds, 1 KiB
// values): DynamoDB calls, write calls, write calls on the key's own item
// (each one a stream record that makes every other node evict the key), and
// the write and read units DynamoDB reports (ReturnConsumedCapacity=TOTAL,
// asked of every request by an SDK middleware). Reported per fill. "new":
// keys never written; "expired": keys whose last 1 KiB entry has expired but
// is still in the table (a write is billed on the larger of the item before
// and after it).
func BenchmarkLeasedFillCost(b *testing.B) {
	b.Run("new", func(b *testing.B) { benchLeasedFill(b, false) })
	b.Run("expired", func(b *testing.B) { benchLeasedFill(b, true) })
}

func benchLeasedFill(b *testing.B, expired bool) {
	cfg := awsConfig(b)
	table := dynamolocal.TableName(b)
	meter := &capacityMeter{keyPrefix: "#"} // a key's partition key is namespace#key; no lease item's holds '#'
	ddb := l2.NewClient(cfg, func(o *dynamodb.Options) { o.APIOptions = append(o.APIOptions, meter.add) })
	c, _ := newNode(b, cfg, table, func(o *tiered.Options[[]byte]) {
		o.DynamoDB = ddb
		o.DisableInvalidation = true // no stream reads in the counts
	})
	value := make([]byte, 1024)
	load := func(context.Context, string) ([]byte, error) { return value, nil }
	ctx := context.Background()
	for i := range 8 { // connections up
		if _, err := c.GetOrLoad(ctx, fmt.Sprintf("leasecost/warm/%d", i), load); err != nil {
			b.Fatal(err)
		}
	}
	const keys = 2000 // more than b.Loop asks for at -benchtime 200x..1000x
	if expired {
		writer, err := l2.New(l2.Options{Client: l2.NewClient(cfg), Table: table, CallTimeout: 5 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		if err := parallelDo(keys, 16, func(i int) error {
			_, err := writer.Put(ctx, fmt.Sprintf("leasecost/%d", i), value, time.Second)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		// Await every entry's expiry: the last one written reads as a miss.
		// (DynamoDB Local's sweeper may also delete some meanwhile: those
		// fills then cost what a new key's does.)
		for i := 0; ; i++ {
			_, err := writer.Get(ctx, fmt.Sprintf("leasecost/%d", keys-1))
			if errors.Is(err, l2.ErrNotFound) {
				break
			}
			if err != nil || i == 600 {
				b.Fatalf("entries did not expire: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for i := range keys { // the first ones were written earliest, but a write may have been retried
			if _, err := writer.Get(ctx, fmt.Sprintf("leasecost/%d", i)); !errors.Is(err, l2.ErrNotFound) {
				b.Fatalf("leasecost/%d: %v after the last entry expired", i, err)
			}
		}
	}
	before := meter.snapshot()
	n := 0
	for b.Loop() {
		if n == keys {
			b.Fatalf("more than %d fills asked for", keys)
		}
		if _, err := c.GetOrLoad(ctx, fmt.Sprintf("leasecost/%d", n), load); err != nil {
			b.Fatal(err)
		}
		n++
	}
	d := meter.snapshot().minus(before)
	if st := c.Stats(); st.Leases.Acquired < uint64(n) {
		b.Fatalf("%d leases for %d cold keys: the fills were not leased", st.Leases.Acquired, n)
	}
	f := float64(n)
	b.ReportMetric(float64(d.calls)/f, "calls/fill")
	b.ReportMetric(float64(d.writes)/f, "writes/fill")
	b.ReportMetric(float64(d.keyWrites)/f, "keywrites/fill")
	b.ReportMetric(d.wcu/f, "WCU/fill")
	b.ReportMetric(d.rcu/f, "RCU/fill")
}

// capacityMeter counts requests and the capacity DynamoDB reports for them.
type capacityMeter struct {
	keyPrefix string // a write whose partition key contains it is on a key's item

	mu sync.Mutex
	capacityCounts
}

type capacityCounts struct {
	calls, writes, keyWrites int64
	wcu, rcu                 float64
}

func (c capacityCounts) minus(o capacityCounts) capacityCounts {
	return capacityCounts{c.calls - o.calls, c.writes - o.writes, c.keyWrites - o.keyWrites, c.wcu - o.wcu, c.rcu - o.rcu}
}

func (m *capacityMeter) snapshot() capacityCounts {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.capacityCounts
}

func (m *capacityMeter) add(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("bench.capacity",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			total := types.ReturnConsumedCapacityTotal
			var write bool
			var pk string
			switch p := in.Parameters.(type) {
			case *dynamodb.GetItemInput:
				p.ReturnConsumedCapacity = total
			case *dynamodb.BatchGetItemInput:
				p.ReturnConsumedCapacity = total
			case *dynamodb.UpdateItemInput:
				p.ReturnConsumedCapacity, write, pk = total, true, keyOf(p.Key)
			case *dynamodb.DeleteItemInput:
				p.ReturnConsumedCapacity, write, pk = total, true, keyOf(p.Key)
			case *dynamodb.PutItemInput:
				p.ReturnConsumedCapacity, write, pk = total, true, keyOf(p.Item)
			case *dynamodb.TransactWriteItemsInput:
				p.ReturnConsumedCapacity, write = total, true
			}
			out, md, err := next.HandleInitialize(ctx, in)
			var units float64
			switch o := out.Result.(type) {
			case *dynamodb.GetItemOutput:
				units = capUnits(o.ConsumedCapacity)
			case *dynamodb.BatchGetItemOutput:
				for i := range o.ConsumedCapacity {
					units += capUnits(&o.ConsumedCapacity[i])
				}
			case *dynamodb.UpdateItemOutput:
				units = capUnits(o.ConsumedCapacity)
			case *dynamodb.DeleteItemOutput:
				units = capUnits(o.ConsumedCapacity)
			case *dynamodb.PutItemOutput:
				units = capUnits(o.ConsumedCapacity)
			case *dynamodb.TransactWriteItemsOutput:
				for i := range o.ConsumedCapacity {
					units += capUnits(&o.ConsumedCapacity[i])
				}
			}
			m.mu.Lock()
			m.calls++
			if write {
				m.writes++
				m.wcu += units
				if strings.Contains(pk, m.keyPrefix) {
					m.keyWrites++
				}
			} else {
				m.rcu += units
			}
			m.mu.Unlock()
			return out, md, err
		}), middleware.After)
}

func keyOf(m map[string]types.AttributeValue) string {
	if s, ok := m[l2.PartitionKeyAttr].(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

func capUnits(c *types.ConsumedCapacity) float64 {
	if c == nil {
		return 0
	}
	return aws.ToFloat64(c.CapacityUnits)
}

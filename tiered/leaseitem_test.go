package tiered_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/tiered"
)

// TestLeasedLoadEvictsOnce: a load under a lease writes the key's item once
// (the lease lives in a sibling item the stream consumer skips), so every
// other node evicts the key once per load, not twice. The count is taken up
// to a marker write made after the loads: DynamoDB Local has one stream
// shard, so every earlier record has been applied when the marker's is.
func TestLeasedLoadEvictsOnce(t *testing.T) {
	nodes := newCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	ctx := testContext(t)
	const n = 5
	for i := range n {
		if v, err := a.GetOrLoad(ctx, fmt.Sprintf("k%d", i), constLoader("v")); err != nil || v != "v" {
			t.Fatalf("GetOrLoad = %q, %v", v, err)
		}
	}
	if st := a.Stats(); st.Leases.Acquired != n {
		t.Fatalf("%d leases for %d cold keys; the loads were not leased", st.Leases.Acquired, n)
	}
	if err := a.Set(ctx, "marker", "m"); err != nil {
		t.Fatal(err)
	}
	evicted := map[string]int{}
	timeout := time.After(30 * time.Second)
	for evicted["marker"] == 0 {
		select {
		case k := <-b.events:
			evicted[k]++
		case <-timeout:
			t.Fatalf("the marker write never reached the other node; evictions so far %v", evicted)
		}
	}
	for i := range n {
		if k := fmt.Sprintf("k%d", i); evicted[k] != 1 {
			t.Errorf("other node evicted %s %d times for one leased load, want 1 (all: %v)", k, evicted[k], evicted)
		}
	}
}

// A rolling upgrade: nodes of the previous release (item format 1) write
// their lease on the key's own item. These write that format exactly as
// that release did, with the raw SDK, and check that a node of this release
// waits on such a lease as the previous release does.

func format1Lease(t *testing.T, raw *dynamodb.Client, table, pk, owner string) {
	t.Helper()
	_, err := raw.PutItem(testContext(t), &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
		"pk":    &types.AttributeValueMemberS{Value: pk},
		"tomb":  &types.AttributeValueMemberBOOL{Value: true},
		"exp":   &types.AttributeValueMemberN{Value: fmt.Sprint(time.Now().Add(time.Hour).Unix())},
		"lease": &types.AttributeValueMemberS{Value: owner},
		"lexp":  &types.AttributeValueMemberN{Value: fmt.Sprint(time.Now().Add(time.Minute).UnixMilli())},
	}})
	if err != nil {
		t.Fatalf("PutItem: %v", err)
	}
}

// format1Update runs the previous release's lease fill (set != "") or
// release (set == "") of owner's lease.
func format1Update(t *testing.T, raw *dynamodb.Client, table, pk, owner, value string) {
	t.Helper()
	in := &dynamodb.UpdateItemInput{
		TableName:                 aws.String(table),
		Key:                       map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}},
		UpdateExpression:          aws.String("REMOVE #lease, #lexp"),
		ConditionExpression:       aws.String("#lease = :lease"),
		ExpressionAttributeNames:  map[string]string{"#lease": "lease", "#lexp": "lexp"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":lease": &types.AttributeValueMemberS{Value: owner}},
	}
	if value != "" {
		in.UpdateExpression = aws.String("SET #v = :v, #exp = :exp REMOVE #neg, #tomb, #lease, #lexp ADD #ver :one")
		for k, v := range map[string]string{"#v": "v", "#exp": "exp", "#neg": "neg", "#tomb": "tomb", "#ver": "ver"} {
			in.ExpressionAttributeNames[k] = v
		}
		in.ExpressionAttributeValues[":v"] = &types.AttributeValueMemberB{Value: []byte(value)}
		in.ExpressionAttributeValues[":exp"] = &types.AttributeValueMemberN{Value: fmt.Sprint(time.Now().Add(time.Minute).Unix())}
		in.ExpressionAttributeValues[":one"] = &types.AttributeValueMemberN{Value: "1"}
	}
	if _, err := raw.UpdateItem(testContext(t), in); err != nil {
		t.Fatalf("format-1 UpdateItem: %v", err)
	}
}

func TestMixedFleetWaitsOnFormat1Lease(t *testing.T) {
	table := dynamolocal.TableName(t)
	n := newNode(t, table, func(o *tiered.Options[string]) {
		o.LeaseTTL = time.Minute
		o.LeaseWait = time.Minute
	})
	raw := dynamodb.NewFromConfig(awsConfig(t))
	tbl := l2Table(t, table)
	ctx := testContext(t)
	var loads atomic.Int64
	loader := func(context.Context, string) (string, error) { loads.Add(1); return "new's", nil }

	// The older node holds the lease and fills: this node waits, then
	// serves that fill without loading.
	pk, _ := tbl.EncodeKey("filled")
	format1Lease(t, raw, table, pk, "old-node")
	done := make(chan string, 1)
	go func() { v, _ := n.GetOrLoad(ctx, "filled", loader); done <- v }()
	waitFor(t, 30*time.Second, "the node to wait on the format-1 lease", func() bool { return n.Stats().Leases.Waits == 1 })
	format1Update(t, raw, table, pk, "old-node", "old's")
	if v := awaitRecv(t, done, "GetOrLoad"); v != "old's" || loads.Load() != 0 {
		t.Fatalf("GetOrLoad = %q with %d loads; want the older node's fill, no load", v, loads.Load())
	}

	// The older node gives its lease up: this node takes one and loads.
	pk, _ = tbl.EncodeKey("released")
	format1Lease(t, raw, table, pk, "old-node")
	go func() { v, _ := n.GetOrLoad(ctx, "released", loader); done <- v }()
	waitFor(t, 30*time.Second, "the node to wait on the format-1 lease", func() bool { return n.Stats().Leases.Waits == 2 })
	format1Update(t, raw, table, pk, "old-node", "")
	if v := awaitRecv(t, done, "GetOrLoad"); v != "new's" || loads.Load() != 1 {
		t.Fatalf("GetOrLoad = %q with %d loads; want this node's load", v, loads.Load())
	}
	if it, err := tbl.Get(ctx, "released"); err != nil || string(it.Value) != "new's" {
		t.Fatalf("L2 = %+v, %v; want this node's fill", it, err)
	}
	if st := n.Stats(); st.Leases.Acquired != 1 || st.Leases.Timeouts != 0 {
		t.Fatalf("leases %d, timeouts %d; want the lease taken once the old one was released", st.Leases.Acquired, st.Leases.Timeouts)
	}
}

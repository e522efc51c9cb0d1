package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/internal/history"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

func newCluster(t *testing.T, size int, tweak func(*tiered.Options[string])) []*node {
	table := dynamolocal.TableName(t)
	nodes := make([]*node, size)
	for i := range nodes {
		nodes[i] = newNode(t, table, tweak)
	}
	return nodes
}

func TestRemoteWritesEvictOtherNodes(t *testing.T) {
	nodes := newCluster(t, 3, nil)
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx := testContext(t)
	for _, n := range nodes {
		if v, err := n.GetOrLoad(ctx, "k", constLoader("v0")); err != nil || v != "v0" {
			t.Fatalf("warm-up GetOrLoad = %q, %v", v, err)
		}
	}
	if err := a.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	if v, _ := a.Get(ctx, "k"); v != "v1" {
		t.Fatalf("writer reads %q, want its own write v1", v)
	}
	b.awaitValue(t, "k", "v1")
	c.awaitValue(t, "k", "v1")

	if err := b.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	a.awaitGone(t, "k")
	c.awaitGone(t, "k")
	for _, n := range nodes {
		if st := n.Stats(); st.Stream.Invalidations == 0 || !st.Stream.Enabled {
			t.Fatalf("stats show no invalidations: %+v", st)
		}
	}
}

func TestReplaceOnChangeUpdatesInPlace(t *testing.T) {
	nodes := newCluster(t, 2, func(o *tiered.Options[string]) { o.ReplaceOnChange = true })
	a, b := nodes[0], nodes[1]
	ctx := testContext(t)
	if err := a.Set(ctx, "hot", "v0"); err != nil {
		t.Fatal(err)
	}
	// b holds nothing yet, so the record of that write is an invalidation:
	// once b has seen it, no older record of the key is left to arrive.
	b.awaitEvent(t, "hot")
	if v, err := b.Get(ctx, "hot"); err != nil || v != "v0" {
		t.Fatalf("b Get = %q, %v", v, err)
	}
	getsBefore := b.ops.get("GetItem")
	if err := a.Set(ctx, "hot", "v1"); err != nil {
		t.Fatal(err)
	}
	b.awaitValue(t, "hot", "v1")
	if st := b.Stats(); st.Stream.Replacements == 0 {
		t.Fatalf("no in-place replacement on the other node: %+v", st)
	}
	if got := b.ops.get("GetItem") - getsBefore; got != 0 {
		t.Fatalf("the other node read DynamoDB %d times; a replaced entry needs none", got)
	}
}

// TestReplaceOnChangeKeepsOwnWrites: with NEW_IMAGE, the records of a node's
// own fill (lease placeholder, then the value) and Set come back carrying
// versions it already holds, and cost it nothing.
func TestReplaceOnChangeKeepsOwnWrites(t *testing.T) {
	nodes := newCluster(t, 2, func(o *tiered.Options[string]) { o.ReplaceOnChange = true })
	a, b := nodes[0], nodes[1]
	ctx := testContext(t)
	records := func() uint64 { return a.Stats().Stream.Records }
	before := records()
	// A loader slower than the stream: the record of this node's own lease
	// arrives while the fill is still in flight, and must not fence it.
	slow := func(context.Context, string) (string, error) {
		// Polled (the loader runs on a flight goroutine, where t.Fatal is
		// not allowed): the record count is a state with no event to await.
		for deadline := time.Now().Add(30 * time.Second); records() <= before; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				return "", errors.New("the lease's own stream record never came")
			}
		}
		return "v", nil
	}
	if _, err := a.GetOrLoad(ctx, "filled", slow); err != nil {
		t.Fatal(err)
	}
	if err := a.Set(ctx, "written", "w"); err != nil {
		t.Fatal(err)
	}
	// A later write elsewhere: once a has seen it, every earlier record of
	// the shard has reached a too.
	if err := b.Set(ctx, "marker", "m"); err != nil {
		t.Fatal(err)
	}
	a.awaitEvent(t, "marker")
	gets := a.ops.get("GetItem")
	for k, want := range map[string]string{"filled": "v", "written": "w"} {
		if v, err := a.Get(ctx, k); err != nil || v != want {
			t.Fatalf("Get(%s) = %q, %v", k, v, err)
		}
	}
	if got := a.ops.get("GetItem") - gets; got != 0 {
		t.Fatalf("%d GetItem calls: the node's own records evicted what it had just stored", got)
	}
}

func TestConsumerRestartKeepsCoherence(t *testing.T) {
	nodes := newCluster(t, 2, nil)
	a := nodes[0]
	ctx := testContext(t)
	if _, err := a.GetOrLoad(ctx, "k", constLoader("v0")); err != nil {
		t.Fatal(err)
	}
	// Restart the other node: a new process with a new consumer.
	_ = nodes[1].Close()
	b := newNode(t, a.tableName, nil)
	if v, err := b.Get(ctx, "k"); err != nil || v != "v0" {
		t.Fatalf("restarted node Get = %q, %v", v, err)
	}
	if err := a.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	b.awaitValue(t, "k", "v1")
}

func TestStreamDisabledFlushesAndRecovers(t *testing.T) {
	nodes := newCluster(t, 3, func(o *tiered.Options[string]) { o.StalenessBound = time.Second })
	ctx := testContext(t)
	if _, err := nodes[0].GetOrLoad(ctx, "k", constLoader("v0")); err != nil {
		t.Fatal(err)
	}
	// Once every node has seen a later write, the records of that fill have
	// come and gone; then each node reads k into its L1 and must hold it.
	if err := nodes[0].Set(ctx, "marker", "m"); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		n.awaitEvent(t, "marker")
		if v, err := n.Get(ctx, "k"); err != nil || v != "v0" {
			t.Fatalf("node %d warm-up Get = %q, %v", i, v, err)
		}
		gets := n.ops.get("GetItem")
		if _, err := n.Get(ctx, "k"); err != nil || n.ops.get("GetItem") != gets {
			t.Fatalf("node %d does not hold k in L1 (%v)", i, err)
		}
	}
	raw := l2.NewClient(awsConfig(t))
	if err := dynamolocal.SetStream(ctx, raw, nodes[0].tableName, ""); err != nil {
		t.Fatalf("disabling the stream: %v", err)
	}
	start := time.Now()
	// A write no stream will ever announce: the other nodes hold v0.
	if err := nodes[0].Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	ack := time.Now()
	for _, n := range nodes {
		n := n
		waitFor(t, 30*time.Second, "a flush or degraded mode after the stream was disabled", func() bool {
			st := n.Stats()
			return st.Stream.Flushes > 0 || st.Stream.Degraded
		})
	}
	t.Logf("every node flushed or degraded %v after the stream was disabled (T/2 = %v)", time.Since(start), time.Second/2)
	// The bound holds without a stream: T after the ack, nobody serves v0.
	// Waiting out T is the property under test, not a stand-in for an event.
	time.Sleep(time.Until(ack.Add(time.Second)))
	for i, n := range nodes {
		if v, err := n.Get(ctx, "k"); err != nil || v != "v1" {
			t.Fatalf("node %d serves %q, %v more than T after v1 was acknowledged, with the stream gone", i, v, err)
		}
	}
	flushed := make([]uint64, len(nodes))
	for i, n := range nodes {
		flushed[i] = n.Stats().Stream.Flushes
	}
	if err := dynamolocal.SetStream(ctx, raw, nodes[0].tableName, types.StreamViewTypeKeysOnly); err != nil {
		t.Fatalf("enabling the stream: %v", err)
	}
	for i, n := range nodes {
		i, n := i, n
		waitFor(t, 60*time.Second, "recovery (trusted again, after one more flush) once the stream came back", func() bool {
			st := n.Stats()
			return !st.Stream.Degraded && st.Stream.Flushes > flushed[i]
		})
	}
	// And invalidation works again on the new stream.
	if err := nodes[0].Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	nodes[1].awaitValue(t, "k", "v2")
	nodes[2].awaitValue(t, "k", "v2")
}

// TestHistoryRespectsStalenessBound records every write and read of several
// nodes and checks that no read returned a value older than T.
func TestHistoryRespectsStalenessBound(t *testing.T) {
	const (
		T        = 500 * time.Millisecond
		keys     = 40
		minReads = 10000
		runFor   = 4 * time.Second
	)
	nodes := newCluster(t, 3, func(o *tiered.Options[string]) { o.StalenessBound = T })
	ctx := testContext(t)

	// The source of truth: writers update it before writing the cache, as an
	// application writing its database first would.
	var srcMu sync.Mutex
	source := map[string]string{}
	initial := func(key string) (string, bool) { return "init-" + key, true }
	loader := func(_ context.Context, key string) (string, error) {
		srcMu.Lock()
		defer srcMu.Unlock()
		v, ok := source[key]
		if !ok {
			v, _ = initial(key)
		} else if v == "" {
			return "", tiered.ErrNotFound
		}
		return v, nil
	}
	checker := history.NewChecker(T, initial)
	var reads, writes atomic.Int64
	var readsMu sync.Mutex
	var recorded []history.Read
	deadline := time.Now().Add(runFor)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i, n := range nodes {
		i, n := i, n
		wg.Add(1)
		go func() { // one writer per node
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for seq := 0; time.Now().Before(deadline); seq++ {
				key := fmt.Sprint("k", rng.IntN(keys))
				val := fmt.Sprintf("n%d/%d", i, seq)
				del := rng.IntN(10) == 0
				if del {
					val = ""
				}
				start := time.Now()
				srcMu.Lock()
				source[key] = val
				srcMu.Unlock()
				var err error
				if del {
					err = n.Delete(ctx, key)
				} else {
					err = n.Set(ctx, key, val)
				}
				if err != nil {
					errs <- err
					return
				}
				checker.AddWrite(history.Write{Node: fmt.Sprint(i), Key: key, Value: val, Start: start, End: time.Now()})
				writes.Add(1)
				time.Sleep(time.Duration(5+rng.IntN(10)) * time.Millisecond) // pacing, not synchronisation
			}
		}()
		for r := 0; r < 2; r++ {
			wg.Add(1)
			go func() { // two readers per node
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(i), uint64(r)+7))
				for time.Now().Before(deadline) || reads.Load() < minReads {
					key := fmt.Sprint("k", rng.IntN(keys))
					start := time.Now()
					v, err := n.GetOrLoad(ctx, key, loader)
					end := time.Now()
					if err != nil && !errors.Is(err, tiered.ErrNotFound) {
						errs <- err
						return
					}
					readsMu.Lock()
					recorded = append(recorded, history.Read{Node: fmt.Sprint(i), Key: key, Value: v, Found: err == nil, Start: start, End: end})
					readsMu.Unlock()
					reads.Add(1)
					if rng.IntN(8) == 0 {
						time.Sleep(time.Millisecond) // pacing: spread reads over the run
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("operation failed: %v", err)
	}
	// Judge reads once every write is known: a reader can see a value before
	// its writer has recorded the acknowledgement.
	for _, r := range recorded {
		checker.CheckRead(r)
	}
	vs := checker.Violations()
	t.Logf("%d reads, %d writes on %d nodes, T=%v: %d violations", checker.Reads(), writes.Load(), len(nodes), T, len(vs))
	for i, v := range vs {
		if i == 10 {
			break
		}
		t.Errorf("violation: %v", v)
	}
	if len(vs) > 0 {
		t.Fatalf("%d reads broke the staleness bound", len(vs))
	}
	if checker.Reads() < minReads {
		t.Fatalf("only %d reads checked, want >= %d", checker.Reads(), minReads)
	}
	var inval uint64
	for _, n := range nodes {
		inval += n.Stats().Stream.Invalidations
	}
	if inval == 0 {
		t.Fatalf("no invalidations happened: the test did not exercise the stream")
	}
}

// TestReplaceOnChangeDropsForeignLowerVersion: a foreign writer that stores
// an item with a version below the one this node holds (its own write) has
// still written after it. The record is not provably this node's own (no
// writer mark of its own), so the node must not keep its older value.
func TestReplaceOnChangeDropsForeignLowerVersion(t *testing.T) {
	a := newNode(t, dynamolocal.TableName(t), func(o *tiered.Options[string]) { o.ReplaceOnChange = true })
	ctx := testContext(t)
	if err := a.Set(ctx, "k", "mine"); err != nil {
		t.Fatal(err)
	}
	if v, err := a.Get(ctx, "k"); err != nil || v != "mine" {
		t.Fatalf("Get after own Set = %q, %v", v, err)
	}
	rawPut(t, a.tableName, map[string]types.AttributeValue{
		"pk":  &types.AttributeValueMemberS{Value: "#k"},
		"v":   &types.AttributeValueMemberB{Value: []byte("foreign")},
		"ver": &types.AttributeValueMemberN{Value: "0"}, // below the node's own
		"exp": &types.AttributeValueMemberN{Value: strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)},
	})
	a.awaitValue(t, "k", "foreign")
}

// TestReplaceOnChangeDropsForeignValueUnderOwnMark: a foreign writer that
// changes only the value (UpdateItem SET v), leaving this node's writer mark
// and the version as they were, has not written this node's entry: the
// record must not be taken for the node's own.
func TestReplaceOnChangeDropsForeignValueUnderOwnMark(t *testing.T) {
	a := newNode(t, dynamolocal.TableName(t), func(o *tiered.Options[string]) { o.ReplaceOnChange = true })
	ctx := testContext(t)
	if err := a.Set(ctx, "k", "mine"); err != nil {
		t.Fatal(err)
	}
	ddb := dynamodb.NewFromConfig(awsConfig(t))
	if _, err := ddb.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(a.tableName),
		Key:                       map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "#k"}},
		UpdateExpression:          aws.String("SET v = :v"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": &types.AttributeValueMemberB{Value: []byte("foreign")}},
	}); err != nil {
		t.Fatal(err)
	}
	a.awaitValue(t, "k", "foreign")
}

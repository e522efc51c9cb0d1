package tiered_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/internal/memstore"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

func TestMain(m *testing.M) { dynamolocal.Main(m) }

// testCallTimeout is the per-call DynamoDB deadline of the test nodes: a
// loaded CI machine (or a DynamoDB Local restarted cold by an outage test)
// can take longer than the production default, l2.DefaultCallTimeout, for an
// ordinary call. Tests about that default set CallTimeout back to 0.
const testCallTimeout = 5 * time.Second

// opCounter counts DynamoDB requests by operation, through an SDK middleware.
type opCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *opCounter) add(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("tieredtest.count",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			c.mu.Lock()
			if c.n == nil {
				c.n = map[string]int{}
			}
			c.n[middleware.GetOperationName(ctx)]++
			c.mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

func (c *opCounter) get(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[op]
}

// node is one Cache with its own clients, as one process would have.
type node struct {
	*tiered.Cache[string]
	ops       *opCounter
	events    chan string // keys this node's stream consumer invalidated
	tableName string
	// mem is the in-memory table of a node built under -short (backend_test.go);
	// nil on DynamoDB Local. Such a node follows no stream.
	mem *memstore.Store
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func awsConfig(t testing.TB) aws.Config {
	return dynamolocal.AWSConfig(dynamolocal.ForTest(t).Endpoint())
}

func newNode(t testing.TB, table string, tweak func(*tiered.Options[string])) *node {
	t.Helper()
	return newNodeAt(t, awsConfig(t), table, tweak)
}

func newNodeAt(t testing.TB, cfg aws.Config, table string, tweak func(*tiered.Options[string])) *node {
	t.Helper()
	n := &node{ops: &opCounter{}, events: make(chan string, 1<<16), tableName: table}
	ddb := l2.NewClient(cfg, func(o *dynamodb.Options) { o.APIOptions = append(o.APIOptions, n.ops.add) })
	o := tiered.Options[string]{
		Table:       table,
		CreateTable: true,
		AWS:         &cfg,
		DynamoDB:    ddb,
		CallTimeout: testCallTimeout,
		OnInvalidate: func(key string, _ time.Time) {
			select {
			case n.events <- key:
			default:
			}
		},
	}
	if tweak != nil {
		tweak(&o)
	}
	c, err := tiered.New(testContext(t), o)
	if err != nil {
		t.Fatalf("tiered.New: %v", err)
	}
	n.Cache = c
	t.Cleanup(func() { _ = c.Close() })
	return n
}

// awaitValue waits, event by event, until n serves want for key.
func (n *node) awaitValue(t testing.TB, key, want string) {
	t.Helper()
	ctx := testContext(t)
	if n.mem != nil { // no stream: what changes L1 is this node's own work
		waitFor(t, 30*time.Second, "the node to serve "+want, func() bool { v, err := n.Get(ctx, key); return err == nil && v == want })
		return
	}
	timeout := time.After(30 * time.Second)
	for {
		if v, err := n.Get(ctx, key); err == nil && v == want {
			return
		}
		select {
		case <-n.events:
		case <-timeout:
			v, err := n.Get(ctx, key)
			t.Fatalf("node never served %q for the key; last Get = %q, %v", want, v, err)
		}
	}
}

// awaitEvent waits until n's stream consumer dropped or replaced key. A
// node without a stream (n.mem) never drops anything: nothing to wait for.
func (n *node) awaitEvent(t testing.TB, key string) {
	t.Helper()
	if n.mem != nil {
		return
	}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case k := <-n.events:
			if k == key {
				return
			}
		case <-timeout:
			st := n.Stats()
			t.Fatalf("no stream event for the key within 30s; degraded %v, stream %+v", st.Stream.Degraded, st.Stream)
		}
	}
}

// awaitEvents waits until n's stream consumer dropped or replaced every key.
func (n *node) awaitEvents(t testing.TB, keys ...string) {
	t.Helper()
	if n.mem != nil {
		return // as awaitEvent
	}
	left := map[string]bool{}
	for _, k := range keys {
		left[k] = true
	}
	timeout := time.After(30 * time.Second)
	for len(left) > 0 {
		select {
		case k := <-n.events:
			delete(left, k)
		case <-timeout:
			t.Fatalf("no stream event for %d of the keys within 30s", len(left))
		}
	}
}

// awaitGone waits, event by event, until n answers ErrNotFound for key.
func (n *node) awaitGone(t testing.TB, key string) {
	t.Helper()
	ctx := testContext(t)
	if n.mem != nil { // as awaitValue
		waitFor(t, 30*time.Second, "the node to answer ErrNotFound", func() bool { _, err := n.Get(ctx, key); return errors.Is(err, tiered.ErrNotFound) })
		return
	}
	timeout := time.After(30 * time.Second)
	for {
		if _, err := n.Get(ctx, key); errors.Is(err, tiered.ErrNotFound) {
			return
		}
		select {
		case <-n.events:
		case <-timeout:
			v, err := n.Get(ctx, key)
			t.Fatalf("node still serves the key: Get = %q, %v", v, err)
		}
	}
}

func constLoader(v string) tiered.Loader[string] {
	return func(context.Context, string) (string, error) { return v, nil }
}

// l2Table opens the table directly, as an operator's tool would.
func l2Table(t testing.TB, name string) *l2.Table {
	t.Helper()
	tbl, err := l2.New(l2.Options{Client: l2.NewClient(awsConfig(t)), Table: name, CallTimeout: testCallTimeout})
	if err != nil {
		t.Fatalf("l2.New: %v", err)
	}
	return tbl
}

// The one set of waiting helpers of this package's tests.

// awaitCond polls cond until it holds or d passes, and reports whether it
// held. Polling a state is the synchronisation where no event can be
// awaited: the breaker and the stream consumer change state on their own
// clocks.
func awaitCond(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFor is awaitCond that fails the test, naming what it waited for.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	if !awaitCond(limit, cond) {
		t.Fatalf("timed out after %v waiting for %s", limit, what)
	}
}

// awaitRecv receives from ch, or fails the test after 30 s.
func awaitRecv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

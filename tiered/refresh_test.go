package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/tiered"
)

// refreshSoftTTL is when refresh-ahead starts for a refreshNode's entries:
// 5% of its 10 s L1 TTL, without jitter.
const refreshSoftTTL = 500 * time.Millisecond

// refreshNode has a 10 s L1 TTL whose refresh-ahead starts after 5% of it
// (refreshSoftTTL), without jitter, on a test clock: a test moves its entries
// past the soft TTL by advancing the clock (pastSoftTTL), not by sleeping,
// and they stay in L1 for 9.5 s more of real time, however slow the machine.
// Without leases a load writes one stream record (the fill), not two (lease,
// fill), so awaiting a key's event means its record has come back.
func refreshNode(t *testing.T) (*node, *tiered.TestClock) {
	clock := &tiered.TestClock{}
	n := newSemNode(t, func(o *tiered.Options[string]) {
		o.L1TTL = 10 * time.Second
		o.RefreshAhead = 0.05
		o.TTLJitter = -1
		o.DisableLeases = true
		tiered.SetTestClock(o, clock)
	})
	return n, clock
}

// pastSoftTTL moves the entries stored so far past their soft TTL. The jump
// is T/4 (the default T is 2 s), so the trust deadline the consumer set
// before it (T/2 past its last poll) still holds the moment after.
func pastSoftTTL(clock *tiered.TestClock) { clock.Advance(refreshSoftTTL) }

func TestRefreshAheadServesAtOnceAndReloadsOnce(t *testing.T) {
	n, clock := refreshNode(t)
	ctx := testContext(t)
	var calls atomic.Int64
	gate := make(chan struct{})
	reloading := make(chan struct{}, 1)
	loader := func(_ context.Context, key string) (string, error) {
		c := calls.Add(1)
		if c > 2 { // calls 1 and 2 load "hot" and "idle"; the next is the refresh
			reloading <- struct{}{}
			<-gate
		}
		return key + strconv.FormatInt(c, 10), nil
	}
	if v, err := n.GetOrLoad(ctx, "hot", loader); err != nil || v != "hot1" {
		t.Fatalf("first load %q, %v", v, err)
	}
	if v, err := n.GetOrLoad(ctx, "idle", loader); err != nil || v != "idle2" {
		t.Fatalf("first load %q, %v", v, err)
	}
	// Entries stored by this node come back through the stream and are
	// dropped (KEYS_ONLY); read them once more so L1 holds them, then wait.
	n.awaitEvents(t, "hot", "idle")
	for _, k := range []string{"hot", "idle"} {
		if _, err := n.GetOrLoad(ctx, k, loader); err != nil {
			t.Fatal(err)
		}
	}
	pastSoftTTL(clock)

	// Many hits past the soft TTL: each returns the current value at once,
	// while exactly one reload runs (blocked on gate) in the background.
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := n.GetOrLoad(ctx, "hot", loader); err != nil || v != "hot1" {
				t.Errorf("hit during refresh = %q, %v; want hot1 at once", v, err)
			}
		}()
	}
	wg.Wait()
	awaitRecv(t, reloading, "the refresh to call the loader")
	close(gate)
	n.awaitValue(t, "hot", "hot3")
	st := n.Stats()
	if st.Refresh.Started != 1 || calls.Load() != 3 {
		t.Fatalf("refreshes %d, loader calls %d; want exactly one refresh (3 calls)", st.Refresh.Started, calls.Load())
	}
	// "idle" was not read past its soft TTL: never refreshed.
	if v, err := n.Get(ctx, "idle"); err != nil || v != "idle2" {
		t.Fatalf("idle key = %q, %v; want idle2, never reloaded", v, err)
	}
}

func TestRefreshAheadFailureKeepsServing(t *testing.T) {
	n, clock := refreshNode(t)
	ctx := testContext(t)
	var calls atomic.Int64
	failed := make(chan struct{})
	loader := func(context.Context, string) (string, error) {
		if calls.Add(1) == 1 {
			return "v1", nil
		}
		close(failed)
		return "", errors.New("source down")
	}
	if _, err := n.GetOrLoad(ctx, "k", loader); err != nil {
		t.Fatal(err)
	}
	n.awaitEvent(t, "k") // this node's own write came back through the stream
	if _, err := n.GetOrLoad(ctx, "k", loader); err != nil {
		t.Fatal(err)
	}
	pastSoftTTL(clock)
	if v, err := n.GetOrLoad(ctx, "k", loader); err != nil || v != "v1" {
		t.Fatalf("hit past soft TTL = %q, %v", v, err)
	}
	awaitRecv(t, failed, "the refresh to call the loader")
	waitFor(t, 10*time.Second, "the refresh error to be counted", func() bool { return n.Stats().Refresh.Errors == 1 })
	for i := 0; i < 10; i++ {
		if v, err := n.GetOrLoad(ctx, "k", loader); err != nil || v != "v1" {
			t.Fatalf("after a failed refresh = %q, %v; want v1 until its TTL", v, err)
		}
	}
	if c := calls.Load(); c != 2 {
		t.Fatalf("loader calls %d; a failed refresh is not retried by every hit", c)
	}
}

// putExpired writes an item whose entry expired ago, as DynamoDB keeps it
// until its TTL sweeper runs.
func putExpired(t *testing.T, table, key, value string, ago time.Duration) {
	t.Helper()
	ddb := dynamodb.NewFromConfig(awsConfig(t))
	_, err := ddb.PutItem(testContext(t), &dynamodb.PutItemInput{
		TableName: aws.String(table),
		Item: map[string]types.AttributeValue{
			"pk":  &types.AttributeValueMemberS{Value: "#" + key},
			"v":   &types.AttributeValueMemberB{Value: []byte(value)},
			"ver": &types.AttributeValueMemberN{Value: "7"},
			"exp": &types.AttributeValueMemberN{Value: fmt.Sprint(time.Now().Add(-ago).Unix())},
		},
	})
	if err != nil {
		t.Fatalf("PutItem: %v", err)
	}
}

func TestStaleIfError(t *testing.T) {
	on := newSemNode(t, func(o *tiered.Options[string]) { o.StaleIfError = true })
	off := on.peer(t, nil)
	ctx := testContext(t)
	sourceDown := errors.New("source down")
	failing := func(context.Context, string) (string, error) { return "", sourceDown }

	on.putExpired(t, "k", "last", time.Minute)
	v, err := on.GetOrLoad(ctx, "k", failing)
	var se *tiered.StaleError
	if v != "last" || !errors.Is(err, tiered.ErrStale) || !errors.Is(err, sourceDown) || !errors.As(err, &se) {
		t.Fatalf("StaleIfError: GetOrLoad = %q, %v; want the last value with a *StaleError wrapping the loader's error", v, err)
	}
	if st := on.Stats(); st.Loads.StaleServed != 1 {
		t.Fatalf("StaleServed = %d, want 1", st.Loads.StaleServed)
	}
	// Nothing was cached: a working loader is called next time.
	if v, err := on.GetOrLoad(ctx, "k", constLoader("fresh")); err != nil || v != "fresh" {
		t.Fatalf("after a stale answer, a working loader gives %q, %v", v, err)
	}

	on.putExpired(t, "k2", "last", time.Minute)
	if v, err := off.GetOrLoad(ctx, "k2", failing); !errors.Is(err, sourceDown) || errors.Is(err, tiered.ErrStale) || v != "" {
		t.Fatalf("without StaleIfError: %q, %v; want the loader's error alone", v, err)
	}
	// Older than MaxStale (default 1 h): not served.
	on.putExpired(t, "k3", "ancient", 2*time.Hour)
	if v, err := on.GetOrLoad(ctx, "k3", failing); !errors.Is(err, sourceDown) || errors.Is(err, tiered.ErrStale) {
		t.Fatalf("past MaxStale: %q, %v; want the loader's error alone", v, err)
	}
	// A loader's ErrNotFound is an answer, not a failure: never stale.
	on.putExpired(t, "k4", "last", time.Minute)
	gone := func(context.Context, string) (string, error) { return "", tiered.ErrNotFound }
	if _, err := on.GetOrLoad(ctx, "k4", gone); !errors.Is(err, tiered.ErrNotFound) || errors.Is(err, tiered.ErrStale) {
		t.Fatalf("loader said not found: %v; want ErrNotFound, no stale value", err)
	}
}

func TestRefreshAheadThroughGetMany(t *testing.T) {
	n, clock := refreshNode(t)
	ctx := testContext(t)
	var mu sync.Mutex
	var calls [][]string
	refreshed := make(chan struct{})
	loader := func(_ context.Context, keys []string) (map[string]string, error) {
		mu.Lock()
		calls = append(calls, keys)
		nth := len(calls)
		mu.Unlock()
		if nth == 2 {
			defer close(refreshed)
		}
		m := map[string]string{}
		for _, k := range keys {
			m[k] = fmt.Sprint(k, "@", nth)
		}
		return m, nil
	}
	if _, err := n.GetMany(ctx, []string{"a", "b"}, loader); err != nil {
		t.Fatal(err)
	}
	n.awaitEvents(t, "a", "b") // both fills came back through the stream (KEYS_ONLY drops them)
	if m, err := n.GetMany(ctx, []string{"a", "b"}, loader); err != nil || m["a"] != "a@1" {
		t.Fatalf("reread = %v, %v", m, err)
	}
	pastSoftTTL(clock)
	if m, err := n.GetMany(ctx, []string{"a"}, loader); err != nil || m["a"] != "a@1" {
		t.Fatalf("hit past the soft TTL = %v, %v; want a@1 at once", m, err)
	}
	awaitRecv(t, refreshed, "the refresh to call the batch loader")
	n.awaitValue(t, "a", "a@2")
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 || len(calls[1]) != 1 || calls[1][0] != "a" {
		t.Fatalf("batch loader calls %v; want the refresh to reload just [a]", calls)
	}
}

type tenantKey struct{}

// TestRefreshAheadKeepsContextValues: the background reload runs on the
// values of the context of the hit that started it, as a load on a miss does.
func TestRefreshAheadKeepsContextValues(t *testing.T) {
	n, clock := refreshNode(t)
	ctx := context.WithValue(testContext(t), tenantKey{}, "acme")
	var calls atomic.Int64
	loader := func(ctx context.Context, _ string) (string, error) {
		tenant, _ := ctx.Value(tenantKey{}).(string)
		if tenant != "acme" {
			return "", fmt.Errorf("loader call %d without the tenant", calls.Load()+1)
		}
		return fmt.Sprint("v", calls.Add(1)), nil
	}
	if _, err := n.GetOrLoad(ctx, "k", loader); err != nil {
		t.Fatal(err)
	}
	n.awaitEvent(t, "k")
	if _, err := n.GetOrLoad(ctx, "k", loader); err != nil {
		t.Fatal(err)
	}
	pastSoftTTL(clock)
	if _, err := n.GetOrLoad(ctx, "k", loader); err != nil {
		t.Fatal(err)
	}
	n.awaitValue(t, "k", "v2")
	if st := n.Stats(); st.Refresh.Errors != 0 {
		t.Fatalf("%d refresh errors: the refresh lost the caller's context values", st.Refresh.Errors)
	}
}

// TestTestClockDrivesL1ExpiryAndTrust: the test clock is the one the hit path
// reads, for the entry's expiry (a jump past the L1 TTL makes the next Get
// an L2 read) and for trust (a jump past T/2 makes old entries bypassed until
// the consumer, on the same clock, polls again).
func TestTestClockDrivesL1ExpiryAndTrust(t *testing.T) {
	clock := &tiered.TestClock{}
	n := newNode(t, dynamolocal.TableName(t), func(o *tiered.Options[string]) {
		tiered.SetTestClock(o, clock)
		o.L1TTL = 10 * time.Second
		o.TTLJitter = -1
		o.DisableInvalidation = true
	})
	ctx := testContext(t)
	if v, err := n.GetOrLoad(ctx, "k", constLoader("v")); err != nil || v != "v" {
		t.Fatalf("GetOrLoad = %q, %v", v, err)
	}
	reads := n.ops.get("GetItem")
	if v, err := n.Get(ctx, "k"); err != nil || v != "v" || n.ops.get("GetItem") != reads {
		t.Fatalf("Get = %q, %v with %d more GetItem; want an L1 hit", v, err, n.ops.get("GetItem")-reads)
	}
	clock.Advance(11 * time.Second)
	if v, err := n.Get(ctx, "k"); err != nil || v != "v" || n.ops.get("GetItem") != reads+1 {
		t.Fatalf("Get past the L1 TTL = %q, %v with %d more GetItem; want one L2 read", v, err, n.ops.get("GetItem")-reads)
	}

	s := newNode(t, dynamolocal.TableName(t), func(o *tiered.Options[string]) {
		tiered.SetTestClock(o, clock)
	})
	if _, err := s.GetOrLoad(ctx, "k", constLoader("v")); err != nil {
		t.Fatal(err)
	}
	// Its own fill comes back through the stream and evicts it: refill.
	s.awaitEvent(t, "k")
	if _, err := s.GetOrLoad(ctx, "k", constLoader("v")); err != nil {
		t.Fatal(err)
	}
	// A jump past T/2: the trust the consumer granted before it has lapsed
	// on the hit path's clock, so the entry (older than T/2 now) is not
	// served from L1: bypassed while trust lapses, or flushed when the
	// consumer's next poll sees the lapse. Either way, an L2 read.
	st, reads := s.Stats(), s.ops.get("GetItem")
	clock.Advance(2 * tiered.DefaultStalenessBound)
	if v, err := s.Get(ctx, "k"); err != nil || v != "v" {
		t.Fatalf("Get after the jump = %q, %v", v, err)
	}
	after := s.Stats()
	if after.L1.Hits != st.L1.Hits || s.ops.get("GetItem") != reads+1 {
		t.Fatalf("Get after a jump past T/2: L1 hits %d -> %d, GetItem +%d; want no L1 hit, one L2 read",
			st.L1.Hits, after.L1.Hits, s.ops.get("GetItem")-reads)
	}
	if after.L1.Bypassed == st.L1.Bypassed && after.Stream.Flushes == st.Stream.Flushes {
		t.Fatalf("neither a bypass nor a flush explains the miss: %+v", after.Stream)
	}
}

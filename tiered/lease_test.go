package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"

	"github.com/tieredcache/tieredcache/internal/ddbfault"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

func TestClusterWideStampedeLoadsOnce(t *testing.T) {
	const nodesN, perNode = 3, 100
	// Generous lease times: a loaded machine must not let the lease lapse
	// (or a waiter give up) before the one load lands; the defaults are not
	// what this test is about.
	nodes := newCluster(t, nodesN, func(o *tiered.Options[string]) {
		o.LeaseTTL = 30 * time.Second
		o.LeaseWait = 30 * time.Second
	})
	ctx := testContext(t)
	var started, loads atomic.Int64
	allIn := make(chan struct{})
	waiting := func() (n uint64) {
		for _, nd := range nodes {
			n += nd.Stats().Leases.Waits
		}
		return n
	}
	loader := func(context.Context, string) (string, error) {
		loads.Add(1)
		<-allIn // keep the lease held until every caller on every node has asked...
		// ...and every other node's flight is waiting on this lease.
		// (Polled: the flights' waiting is a state with no event to await.)
		for deadline := time.Now().Add(30 * time.Second); waiting() < nodesN-1; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				return "", errors.New("the other nodes never waited on the lease")
			}
		}
		return "v", nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, nodesN*perNode)
	for _, n := range nodes {
		for i := 0; i < perNode; i++ {
			wg.Add(1)
			go func(n *node) {
				defer wg.Done()
				if started.Add(1) == nodesN*perNode {
					close(allIn)
				}
				v, err := n.GetOrLoad(ctx, "cold", loader)
				if err == nil && v != "v" {
					err = fmt.Errorf("got %q", v)
				}
				if err != nil {
					errs <- err
				}
			}(n)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("GetOrLoad: %v", err)
	}
	if got := loads.Load(); got != 1 {
		t.Fatalf("loader calls across %d nodes x %d goroutines = %d, want 1", nodesN, perNode, got)
	}
	var waits uint64
	for _, n := range nodes {
		waits += n.Stats().Leases.Waits
	}
	if waits == 0 {
		t.Fatalf("no node waited on the lease; the test did not exercise it")
	}
}

// TestStaleSetRaceLeavesNoStaleEntry is memcache's stale-set race: a fill
// reads old data from the source, the source changes and the key is deleted
// (by another node), then the fill completes. Neither tier may keep the old
// value. Hooks (the loader blocking on channels), not sleeps, order the steps.
func TestStaleSetRaceLeavesNoStaleEntry(t *testing.T) {
	nodes := newSemCluster(t, 3, nil)
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx := testContext(t)

	var srcMu sync.Mutex
	source := "old"
	readSource := func() string { srcMu.Lock(); defer srcMu.Unlock(); return source }
	loaded, proceed := make(chan struct{}), make(chan struct{})
	slowFill := func(context.Context, string) (string, error) {
		v := readSource()
		close(loaded)
		<-proceed
		return v, nil
	}
	done := make(chan string, 1)
	go func() { v, _ := a.GetOrLoad(ctx, "k", slowFill); done <- v }()
	<-loaded
	srcMu.Lock()
	source = "new"
	srcMu.Unlock()
	if err := b.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	if v := <-done; v != "old" {
		t.Fatalf("the filling caller got %q, want what its loader returned (old)", v)
	}
	// L2 holds no "old": the lease was voided by the Delete.
	if item, err := a.table(t).Get(ctx, "k"); !errors.Is(err, l2.ErrNotFound) {
		t.Fatalf("L2 after the race: %+v, %v; want not found", item, err)
	}
	// L1 of the filling node holds no "old".
	if v, err := a.Get(ctx, "k"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("filling node serves %q (%v) after the delete", v, err)
	}
	// Any node now loads the new value.
	fresh := func(context.Context, string) (string, error) { return readSource(), nil }
	if v, err := c.GetOrLoad(ctx, "k", fresh); err != nil || v != "new" {
		t.Fatalf("third node GetOrLoad = %q, %v; want new", v, err)
	}
	if st := a.Stats(); st.Loads.StaleFillsDropped != 1 {
		t.Fatalf("StaleFillsDropped = %d, want 1", st.Loads.StaleFillsDropped)
	}
}

// TestFillRacingSetServesTheNewerValue: a fill whose load began before
// another node's Set loses in L2; its callers (some of whom may have joined
// after the Set was acknowledged) get the value the Set wrote, not the older
// load, and no tier keeps the load.
func TestFillRacingSetServesTheNewerValue(t *testing.T) {
	nodes := newSemCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	ctx := testContext(t)
	loaded, proceed := make(chan struct{}), make(chan struct{})
	slow := func(context.Context, string) (string, error) {
		close(loaded)
		<-proceed
		return "old", nil
	}
	done := make(chan string, 1)
	go func() { v, _ := a.GetOrLoad(ctx, "k", slow); done <- v }()
	<-loaded
	if err := b.Set(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	if v := <-done; v != "new" {
		t.Fatalf("the racing fill's caller got %q, want the newer %q", v, "new")
	}
	if item, err := a.table(t).Get(ctx, "k"); err != nil || string(item.Value) != "new" {
		t.Fatalf("L2 holds %q, %v; want new", item.Value, err)
	}
	a.awaitValue(t, "k", "new")
	if st := a.Stats(); st.Loads.StaleFillsDropped != 1 {
		t.Fatalf("StaleFillsDropped = %d, want 1", st.Loads.StaleFillsDropped)
	}
}

// TestReleasedLeaseWakesWaiters: when the lease holder's load fails it
// releases the lease, and nodes waiting on it load at once instead of
// waiting for the lease to expire.
func TestReleasedLeaseWakesWaiters(t *testing.T) {
	nodes := newSemCluster(t, 2, func(o *tiered.Options[string]) {
		o.LeaseTTL = time.Minute // far longer than the test may take
		o.LeaseWait = time.Minute
	})
	a, b := nodes[0], nodes[1]
	ctx := testContext(t)
	fail := make(chan struct{})
	failing := func(context.Context, string) (string, error) {
		<-fail
		return "", errors.New("source hiccup")
	}
	aDone := make(chan error, 1)
	go func() { _, err := a.GetOrLoad(ctx, "k", failing); aDone <- err }()
	waitFor(t, 30*time.Second, "node a to hold the lease", func() bool { return a.Stats().Leases.Acquired == 1 })

	bDone := make(chan error, 1)
	short, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	go func() {
		v, err := b.GetOrLoad(short, "k", constLoader("v"))
		if err == nil && v != "v" {
			err = fmt.Errorf("got %q", v)
		}
		bDone <- err
	}()
	waitFor(t, 30*time.Second, "node b to wait on the lease", func() bool { return b.Stats().Leases.Waits > 0 })
	close(fail)
	if err := <-aDone; err == nil {
		t.Fatal("the holder's failing load returned no error")
	}
	if err := <-bDone; err != nil {
		t.Fatalf("waiter after the holder released its lease: %v (it waited for the lease to expire?)", err)
	}
	if st := b.Stats(); st.Leases.Acquired != 1 || st.Leases.Timeouts != 0 {
		t.Fatalf("waiter took %d leases, %d timeouts; want it to take the released lease", st.Leases.Acquired, st.Leases.Timeouts)
	}
}

// TestFillFencedInL1WhenL2CannotTell: a fill whose L2 write fails (so L2
// cannot refuse it) keeps its value in L1 only, and the L1 fence alone must
// stop it from landing after a Delete that began after the load did.
func TestFillFencedInL1WhenL2CannotTell(t *testing.T) {
	cfg := awsConfig(t)
	inj := ddbfault.New()
	n := newNodeAt(t, cfg, dynamolocal.TableName(t), func(o *tiered.Options[string]) {
		o.DynamoDB = l2.NewClient(cfg, inj.Options)
		o.DisableLeases = true // no lease write: the fill is the only UpdateItem after the Delete
	})
	ctx := testContext(t)
	loaded, proceed := make(chan struct{}), make(chan struct{})
	stale := func(context.Context, string) (string, error) {
		close(loaded)
		<-proceed
		return "old", nil
	}
	done := make(chan string, 1)
	go func() { v, _ := n.GetOrLoad(ctx, "k", stale); done <- v }()
	<-loaded
	if err := n.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	inj.Add(ddbfault.Rule{Op: "UpdateItem", Err: errors.New("injected: fill write lost"), Times: l2.ClientMaxAttempts})
	close(proceed)
	if v := <-done; v != "old" {
		t.Fatalf("the racing caller got %q", v)
	}
	if inj.Injected() == 0 {
		t.Fatal("the fill's L2 write was not the one failed: the test did not exercise the L1 fence")
	}
	if v, err := n.Get(ctx, "k"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("after Delete, L1 serves the stale fill %q (%v)", v, err)
	}
	if st := n.Stats(); st.L1.SetsFenced == 0 {
		t.Fatalf("no fenced L1 set counted: %+v", st.L1)
	}
}

// TestUnguardedFillSkipsL2: when the miss's L2 read failed, the load has
// neither a lease nor the version it saw to guard its L2 write (a Delete
// meanwhile could not make it lose), so it keeps the value in L1 only.
func TestUnguardedFillSkipsL2(t *testing.T) {
	cfg := awsConfig(t)
	inj := ddbfault.New()
	n := newNodeAt(t, cfg, dynamolocal.TableName(t), func(o *tiered.Options[string]) {
		o.DynamoDB = l2.NewClient(cfg, inj.Options)
	})
	ctx := testContext(t)
	inj.Add(ddbfault.Rule{Op: "GetItem", Err: errors.New("injected: read failed"), Times: l2.ClientMaxAttempts})
	updates := inj.Attempts("UpdateItem")
	if v, err := n.GetOrLoad(ctx, "k", constLoader("v")); err != nil || v != "v" {
		t.Fatalf("GetOrLoad with L2 unreadable = %q, %v", v, err)
	}
	if got := inj.Attempts("UpdateItem") - updates; got != 0 {
		t.Fatalf("%d UpdateItem calls: an unguarded fill was written to L2", got)
	}
	if _, err := l2Table(t, n.tableName).Get(ctx, "k"); !errors.Is(err, l2.ErrNotFound) {
		t.Fatalf("L2 holds the unguarded fill: %v", err)
	}
	if v, err := n.Get(ctx, "k"); err != nil || v != "v" {
		t.Fatalf("L1 should keep the value: %q, %v", v, err)
	}
}

// TestLeaseReleasedWhenL2RefusesTheValue: a value too large for an item is
// kept in L1 only; its lease is given back so other nodes load at once
// instead of waiting for a fill that will never come.
func TestLeaseReleasedWhenL2RefusesTheValue(t *testing.T) {
	nodes := newSemCluster(t, 2, func(o *tiered.Options[string]) {
		o.LeaseTTL = time.Minute
		o.LeaseWait = time.Minute
	})
	a, b := nodes[0], nodes[1]
	ctx := testContext(t)
	huge := strings.Repeat("x", 500<<10)
	big := func(context.Context, string) (string, error) { return huge, nil }
	if v, err := a.GetOrLoad(ctx, "big", big); err != nil || len(v) != len(huge) {
		t.Fatalf("GetOrLoad of a too-large value: %d bytes, %v", len(v), err)
	}
	if st := a.Stats(); st.L2.TooLarge != 1 {
		t.Fatalf("L2TooLarge = %d, want 1", st.L2.TooLarge)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if v, err := b.GetOrLoad(short, "big", big); err != nil || len(v) != len(huge) {
		t.Fatalf("other node: %d bytes, %v (it waited on a lease never to be filled?)", len(v), err)
	}
	if st := b.Stats(); st.Leases.Acquired != 1 || st.Leases.Waits != 0 {
		t.Fatalf("other node took %d leases after %d waits; want the released lease at once", st.Leases.Acquired, st.Leases.Waits)
	}
}

// TestDeleteBeforeLeaseDoesNotStrandIt: a Delete landing between a miss's L2
// read and its lease moves the key past the version the lease is bound to.
// The lease cannot tell that the Delete came before the load (it reads
// nothing), so the fill loses (one load not kept: the caller still gets it),
// and the lease must not be left for others to wait out: the next node
// takes a lease at once and loads.
func TestDeleteBeforeLeaseDoesNotStrandIt(t *testing.T) {
	table := dynamolocal.TableName(t)
	other := newNode(t, table, func(o *tiered.Options[string]) {
		o.LeaseTTL = time.Minute
		o.LeaseWait = time.Minute
	})
	ctx := testContext(t)
	var once sync.Once
	deleteFirst := func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("tieredtest.deleteBeforeLease",
			func(mctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if middleware.GetOperationName(mctx) == "UpdateItem" { // the first one is AcquireLeaseAt
					once.Do(func() {
						if err := other.Delete(ctx, "k"); err != nil {
							t.Errorf("Delete: %v", err)
						}
					})
				}
				return next.HandleInitialize(mctx, in)
			}), middleware.Before)
	}
	cfg := awsConfig(t)
	a := newNodeAt(t, cfg, table, func(o *tiered.Options[string]) {
		o.DynamoDB = l2.NewClient(cfg, func(o *dynamodb.Options) { o.APIOptions = append(o.APIOptions, deleteFirst) })
		o.LeaseTTL = time.Minute
		o.LeaseWait = time.Minute
	})
	if v, err := a.GetOrLoad(ctx, "k", constLoader("fresh")); err != nil || v != "fresh" {
		t.Fatalf("GetOrLoad = %q, %v", v, err)
	}
	if st := a.Stats(); st.Leases.Acquired != 1 || st.Loads.StaleFillsDropped != 1 {
		t.Fatalf("leases %d, stale fills dropped %d: want the leased fill refused by the Delete's version", st.Leases.Acquired, st.Loads.StaleFillsDropped)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if v, err := other.GetOrLoad(short, "k", constLoader("other")); err != nil || v != "other" {
		t.Fatalf("other node = %q, %v; want its own load", v, err)
	}
	if st := other.Stats(); st.Leases.Acquired != 1 || st.Leases.Waits != 0 {
		t.Fatalf("other node: %d leases, %d waits; want the lease at once, no wait on a stranded one", st.Leases.Acquired, st.Leases.Waits)
	}
}

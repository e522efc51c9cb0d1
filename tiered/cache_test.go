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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

func TestBadInputGetsTypedErrors(t *testing.T) {
	n := newNode(t, dynamolocal.TableName(t), nil)
	ctx := testContext(t)
	cases := []struct {
		name string
		key  string
		want error
	}{
		{"empty", "", l2.ErrEmptyKey},
		{"invalid UTF-8", "bad\xff\xfe", l2.ErrInvalidKey},
		{"too long", strings.Repeat("k", 3000), l2.ErrKeyTooLong},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := n.Get(ctx, tc.key); !errors.Is(err, tc.want) {
				t.Errorf("Get: %v, want %v", err, tc.want)
			}
			if _, err := n.GetOrLoad(ctx, tc.key, constLoader("x")); !errors.Is(err, tc.want) {
				t.Errorf("GetOrLoad: %v, want %v", err, tc.want)
			}
			if err := n.Set(ctx, tc.key, "x"); !errors.Is(err, tc.want) {
				t.Errorf("Set: %v, want %v", err, tc.want)
			}
			if err := n.Delete(ctx, tc.key); !errors.Is(err, tc.want) {
				t.Errorf("Delete: %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("value too large", func(t *testing.T) {
		err := n.Set(ctx, "big", strings.Repeat("v", 400*1024))
		var tooLarge *l2.ValueTooLargeError
		if !errors.Is(err, l2.ErrValueTooLarge) || !errors.As(err, &tooLarge) {
			t.Fatalf("Set of a 400 KiB value: %v, want *l2.ValueTooLargeError", err)
		}
		if tooLarge.Size <= tooLarge.Max || !strings.Contains(err.Error(), fmt.Sprint(tooLarge.Size)) {
			t.Fatalf("error %q should name the value size %d and the limit %d", err, tooLarge.Size, tooLarge.Max)
		}
		if _, err := n.Get(ctx, "big"); !errors.Is(err, tiered.ErrNotFound) {
			t.Fatalf("a refused Set left something behind: %v", err)
		}
	})
	t.Run("nil loader", func(t *testing.T) {
		if _, err := n.GetOrLoad(ctx, "absent", nil); !errors.Is(err, tiered.ErrNilLoader) {
			t.Fatalf("GetOrLoad with a nil loader: %v, want ErrNilLoader", err)
		}
	})
	t.Run("missing table without CreateTable", func(t *testing.T) {
		cfg := awsConfig(t)
		_, err := tiered.New(ctx, tiered.Options[string]{Table: dynamolocal.TableName(t), AWS: &cfg})
		var mismatch *l2.TableMismatchError
		if !errors.Is(err, tiered.ErrInvalidOptions) || !errors.As(err, &mismatch) {
			t.Fatalf("New on a missing table: %v, want ErrInvalidOptions with *l2.TableMismatchError", err)
		}
	})
	t.Run("bad options", func(t *testing.T) {
		_, err := tiered.New(ctx, tiered.Options[string]{})
		if !errors.Is(err, tiered.ErrInvalidOptions) {
			t.Fatalf("New without a table: %v, want ErrInvalidOptions", err)
		}
		_, err = tiered.New(ctx, tiered.Options[string]{Table: "t", L1TTL: time.Hour, L1MaxTTL: time.Minute})
		if !errors.Is(err, tiered.ErrInvalidOptions) {
			t.Fatalf("L1TTL > L1MaxTTL: %v, want ErrInvalidOptions", err)
		}
	})
}

func TestReadYourWritesAndDelete(t *testing.T) {
	n := newSemNode(t, nil)
	ctx := testContext(t)
	if _, err := n.Get(ctx, "k"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get of a new key: %v, want ErrNotFound", err)
	}
	for i := 0; i < 5; i++ {
		want := fmt.Sprint("v", i)
		if err := n.Set(ctx, "k", want); err != nil {
			t.Fatalf("Set: %v", err)
		}
		if got, err := n.Get(ctx, "k"); err != nil || got != want {
			t.Fatalf("Get after Set = %q, %v; want %q", got, err, want)
		}
	}
	if err := n.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got, err := n.Get(ctx, "k"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get after Delete = %q, %v; want ErrNotFound", got, err)
	}
	// A second node (its own L1) sees the write through L2.
	m := n.peer(t, nil)
	if err := n.Set(ctx, "k2", "x"); err != nil {
		t.Fatal(err)
	}
	if got, err := m.Get(ctx, "k2"); err != nil || got != "x" {
		t.Fatalf("other node Get = %q, %v; want x from L2", got, err)
	}
}

func TestConcurrentColdMissesCollapse(t *testing.T) {
	n := newSemNode(t, nil)
	ctx := testContext(t)
	const callers = 1000
	var started, loads atomic.Int64
	allIn := make(chan struct{})
	loader := func(ctx context.Context, key string) (string, error) {
		loads.Add(1)
		<-allIn // hold the flight open until every caller has called
		return "value", nil
	}
	getsBefore := n.ops.get("GetItem")
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if started.Add(1) == callers {
				close(allIn)
			}
			v, err := n.GetOrLoad(ctx, "cold", loader)
			if err == nil && v != "value" {
				err = fmt.Errorf("got %q", v)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("GetOrLoad: %v", err)
	}
	if got := loads.Load(); got != 1 {
		t.Errorf("loader calls = %d, want 1", got)
	}
	if got := n.ops.get("GetItem") - getsBefore; got != 1 {
		t.Errorf("L2 reads (GetItem) = %d, want 1", got)
	}
}

func TestCallerCancelDoesNotFailOthers(t *testing.T) {
	n := newSemNode(t, nil)
	release := make(chan struct{})
	entered := make(chan struct{})
	loader := func(ctx context.Context, key string) (string, error) {
		close(entered)
		select {
		case <-release:
			return "v", nil
		case <-ctx.Done(): // the load's own context must not end with the first caller's
			return "", ctx.Err()
		}
	}
	first, cancelFirst := context.WithCancel(context.Background())
	firstDone := make(chan error, 1)
	go func() { _, err := n.GetOrLoad(first, "k", loader); firstDone <- err }()
	<-entered
	secondDone := make(chan string, 1)
	go func() {
		v, err := n.GetOrLoad(testContext(t), "k", loader)
		if err != nil {
			v = "error: " + err.Error()
		}
		secondDone <- v
	}()
	cancelFirst()
	if err := <-firstDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v, want context.Canceled", err)
	}
	close(release)
	if v := <-secondDone; v != "v" {
		t.Fatalf("other caller got %q, want v", v)
	}
}

func TestLoaderPanicAndErrorsAreNotCached(t *testing.T) {
	n := newSemNode(t, nil)
	ctx := testContext(t)
	_, err := n.GetOrLoad(ctx, "p", func(context.Context, string) (string, error) { panic("boom") })
	var pe *tiered.LoaderPanicError
	if !errors.Is(err, tiered.ErrLoaderPanic) || !errors.As(err, &pe) || pe.Value != "boom" {
		t.Fatalf("panicking loader: %v, want *LoaderPanicError(boom)", err)
	}
	boom := errors.New("source down")
	if _, err := n.GetOrLoad(ctx, "p", func(context.Context, string) (string, error) { return "", boom }); !errors.Is(err, boom) {
		t.Fatalf("failing loader: %v, want %v", err, boom)
	}
	// Neither the panic nor the error was cached: the next loader runs.
	if v, err := n.GetOrLoad(ctx, "p", constLoader("ok")); err != nil || v != "ok" {
		t.Fatalf("after failures GetOrLoad = %q, %v; want ok", v, err)
	}
	st := n.Stats()
	if st.Loads.Panics != 1 || st.Loads.Errors < 2 || st.Loads.Calls != 3 {
		t.Fatalf("stats: panics=%d errors=%d loads=%d; want 1, >=2, 3", st.Loads.Panics, st.Loads.Errors, st.Loads.Calls)
	}
}

func TestNegativeCachingAndLaterCreate(t *testing.T) {
	n := newSemNode(t, nil)
	ctx := testContext(t)
	var loads atomic.Int64
	missing := func(context.Context, string) (string, error) { loads.Add(1); return "", tiered.ErrNotFound }
	for i := 0; i < 3; i++ {
		if _, err := n.GetOrLoad(ctx, "ghost", missing); !errors.Is(err, tiered.ErrNotFound) {
			t.Fatalf("GetOrLoad of a missing key: %v, want ErrNotFound", err)
		}
	}
	if loads.Load() != 1 {
		t.Fatalf("loader calls for a cached not-found = %d, want 1", loads.Load())
	}
	// Another node sees the negative entry in L2 without calling its loader.
	m := n.peer(t, nil)
	if _, err := m.GetOrLoad(ctx, "ghost", missing); !errors.Is(err, tiered.ErrNotFound) || loads.Load() != 1 {
		t.Fatalf("other node: %v, loads=%d; want ErrNotFound from L2, loads=1", err, loads.Load())
	}
	// Creating the key replaces the negative entry everywhere.
	if err := n.Set(ctx, "ghost", "alive"); err != nil {
		t.Fatal(err)
	}
	if v, err := n.Get(ctx, "ghost"); err != nil || v != "alive" {
		t.Fatalf("after Set: %q, %v", v, err)
	}
	if m.mem != nil {
		return // the rest is the stream's work (coherence): DynamoDB Local only
	}
	m.awaitValue(t, "ghost", "alive")
}

func TestLoaderChoosesTTL(t *testing.T) {
	clock := &tiered.TestClock{}
	n := newSemNode(t, func(o *tiered.Options[string]) { tiered.SetTestClock(o, clock) })
	ctx := testContext(t)
	var loads atomic.Int64
	short := func(ctx context.Context, key string) (string, error) {
		loads.Add(1)
		// Whole seconds: the table's TTL attribute is in seconds. Three, so
		// that the second read below comes within the TTL on a loaded machine.
		tiered.SetTTL(ctx, 3*time.Second)
		return fmt.Sprint("v", loads.Load()), nil
	}
	if v, _ := n.GetOrLoad(ctx, "k", short); v != "v1" {
		t.Fatalf("first load %q", v)
	}
	if v, _ := n.GetOrLoad(ctx, "k", short); v != "v1" || loads.Load() != 1 {
		t.Fatalf("within TTL: %q after %d loads; want cached v1", v, loads.Load())
	}
	if n.mem != nil {
		n.elapse(clock, 4*time.Second) // past the TTL in both tiers: the loop below loads at once
	}
	deadline := time.Now().Add(30 * time.Second)
	for loads.Load() == 1 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond) // waiting for wall-clock expiry, not for an event
		_, _ = n.GetOrLoad(ctx, "k", short)
	}
	if loads.Load() < 2 {
		t.Fatalf("an entry with a 3s TTL was still served after 30s")
	}
}

func TestFillRacingDeleteNeverResurrects(t *testing.T) {
	for _, leases := range []bool{true, false} {
		t.Run(fmt.Sprint("leases=", leases), func(t *testing.T) {
			n := newSemNode(t, func(o *tiered.Options[string]) { o.DisableLeases = !leases })
			ctx := testContext(t)
			loaded, proceed := make(chan struct{}), make(chan struct{})
			stale := func(context.Context, string) (string, error) {
				close(loaded) // the loader has read "old" from the source...
				<-proceed     // ...and is slow to return it
				return "old", nil
			}
			done := make(chan string, 1)
			go func() { v, _ := n.GetOrLoad(ctx, "k", stale); done <- v }()
			<-loaded
			if err := n.Delete(ctx, "k"); err != nil { // the source changed; the key is deleted
				t.Fatal(err)
			}
			close(proceed)
			if v := <-done; v != "old" {
				t.Fatalf("the racing caller got %q; it should get what its loader returned", v)
			}
			if v, err := n.Get(ctx, "k"); !errors.Is(err, tiered.ErrNotFound) {
				t.Fatalf("after Delete the stale fill resurrected %q (err %v)", v, err)
			}
		})
	}
}

func TestCloseIsSafeTwiceAndAlongsideCalls(t *testing.T) {
	n := newSemNode(t, nil)
	ctx := testContext(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprint("k", j%20)
				_, _ = n.GetOrLoad(ctx, key, constLoader("v"))
				if j%7 == 0 {
					_ = n.Set(ctx, key, "w")
				}
			}
		}(i)
	}
	time.Sleep(200 * time.Millisecond) // let the callers get going; any interleaving is fine
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if _, err := n.GetOrLoad(ctx, "new", constLoader("v")); !errors.Is(err, tiered.ErrClosed) {
		t.Fatalf("GetOrLoad after Close: %v, want ErrClosed", err)
	}
	if err := n.Set(ctx, "new", "v"); !errors.Is(err, tiered.ErrClosed) {
		t.Fatalf("Set after Close: %v, want ErrClosed", err)
	}
}

// TestL1TTLAppliesToEveryEntry: loaded and written entries live L1TTL in L1
// (not L2TTL capped at L1MaxTTL), while L2 keeps them for L2TTL.
func TestL1TTLAppliesToEveryEntry(t *testing.T) {
	clock := &tiered.TestClock{}
	n := newSemNode(t, func(o *tiered.Options[string]) {
		tiered.SetTestClock(o, clock)
		// Long enough that the fresh reads below come within it on a loaded
		// machine (a Set runs between the first fill and them).
		o.L1TTL = 3 * time.Second
		o.TTLJitter = -1
		o.DisableInvalidation = true // no own-record evictions: expiry alone is under test
	})
	ctx := testContext(t)
	if _, err := n.GetOrLoad(ctx, "loaded", constLoader("v")); err != nil {
		t.Fatal(err)
	}
	if err := n.Set(ctx, "written", "w"); err != nil {
		t.Fatal(err)
	}
	gets := n.ops.get("GetItem")
	for _, k := range []string{"loaded", "written"} { // fresh: from L1
		if _, err := n.Get(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.ops.get("GetItem") - gets; got != 0 {
		t.Fatalf("%d GetItem calls for fresh entries", got)
	}
	n.elapse(clock, 3*time.Second+100*time.Millisecond) // past L1TTL (not L2TTL)
	for _, k := range []string{"loaded", "written"} {   // expired in L1, live in L2
		if _, err := n.Get(ctx, k); err != nil {
			t.Fatalf("Get(%s) after L1 expiry: %v", k, err)
		}
	}
	if got := n.ops.get("GetItem") - gets; got != 2 {
		t.Fatalf("%d GetItem calls after L1TTL passed, want 2: entries outlived L1TTL", got)
	}
}

// consistencyRecorder records the ConsistentRead flag of every read request.
type consistencyRecorder struct {
	mu    sync.Mutex
	flags []bool
}

func (r *consistencyRecorder) add(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("tieredtest.consistency",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			var flag *bool
			switch p := in.Parameters.(type) {
			case *dynamodb.GetItemInput:
				flag = p.ConsistentRead
			case *dynamodb.BatchGetItemInput:
				for _, ka := range p.RequestItems {
					flag = ka.ConsistentRead
				}
			default:
				return next.HandleInitialize(ctx, in)
			}
			r.mu.Lock()
			r.flags = append(r.flags, aws.ToBool(flag))
			r.mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

// TestL2ReadsAreConsistent: the read that refills L1 after an invalidation
// must see the write behind it (an eventually consistent read may not, and
// its older value would then sit in L1 with no record left to evict it), so
// every L2 read is strongly consistent unless the user opts out.
func TestL2ReadsAreConsistent(t *testing.T) {
	for _, eventual := range []bool{false, true} {
		t.Run(fmt.Sprint("EventuallyConsistentReads=", eventual), func(t *testing.T) {
			cfg := awsConfig(t)
			rec := &consistencyRecorder{}
			n := newNodeAt(t, cfg, dynamolocal.TableName(t), func(o *tiered.Options[string]) {
				o.DynamoDB = l2.NewClient(cfg, func(o *dynamodb.Options) { o.APIOptions = append(o.APIOptions, rec.add) })
				o.EventuallyConsistentReads = eventual
			})
			ctx := testContext(t)
			if _, err := n.GetOrLoad(ctx, "a", constLoader("v")); err != nil {
				t.Fatal(err)
			}
			if _, err := n.GetMany(ctx, []string{"b", "c"}, func(_ context.Context, keys []string) (map[string]string, error) {
				return map[string]string{"b": "v", "c": "v"}, nil
			}); err != nil {
				t.Fatal(err)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.flags) < 2 {
				t.Fatalf("%d reads recorded, want GetItem and BatchGetItem", len(rec.flags))
			}
			for i, f := range rec.flags {
				if f == eventual {
					t.Fatalf("read %d: ConsistentRead=%v with EventuallyConsistentReads=%v", i, f, eventual)
				}
			}
		})
	}
}

// TestL1MaxTTLCapsEveryEntry: whatever TTL a loader chooses, no L1 entry
// outlives L1MaxTTL, the last net when invalidation fails.
func TestL1MaxTTLCapsEveryEntry(t *testing.T) {
	n := newSemNode(t, func(o *tiered.Options[string]) {
		o.L1TTL = 200 * time.Millisecond
		o.L1MaxTTL = 400 * time.Millisecond
		o.TTLJitter = -1
		o.DisableInvalidation = true // as if the stream were lost for good
	})
	ctx := testContext(t)
	long := func(ctx context.Context, _ string) (string, error) {
		tiered.SetTTL(ctx, time.Hour)
		return "v", nil
	}
	if _, err := n.GetOrLoad(ctx, "k", long); err != nil {
		t.Fatal(err)
	}
	gets := n.ops.get("GetItem")
	time.Sleep(500 * time.Millisecond) // past L1MaxTTL: the cap itself is under test
	if v, err := n.Get(ctx, "k"); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if got := n.ops.get("GetItem") - gets; got != 1 {
		t.Fatalf("%d GetItem calls after L1MaxTTL: an entry with a 1 h TTL outlived the hard cap", got)
	}
}

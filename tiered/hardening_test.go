package tiered_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/internal/ddbfault"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

// panicCodec is a string codec whose Decode panics (as a buggy codec would,
// with an index out of range) on values starting with "boom".
type panicCodec struct{}

func (panicCodec) Encode(s string) ([]byte, error) { return []byte(s), nil }
func (panicCodec) Decode(b []byte) (string, error) {
	if bytes.HasPrefix(b, []byte("boom")) {
		var empty []int
		_ = empty[len(b)] // index out of range
	}
	return string(b), nil
}

// rawPut writes an item with the raw SDK, as a foreign writer would.
func rawPut(t *testing.T, table string, item map[string]types.AttributeValue) {
	t.Helper()
	ddb := dynamodb.NewFromConfig(awsConfig(t))
	if _, err := ddb.PutItem(testContext(t), &dynamodb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
		t.Fatalf("PutItem: %v", err)
	}
}

// rawValue is an item for key holding value at version ver, live for an hour.
func rawValue(key, value string, ver int) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk":  &types.AttributeValueMemberS{Value: "#" + key},
		"v":   &types.AttributeValueMemberB{Value: []byte(value)},
		"ver": &types.AttributeValueMemberN{Value: fmt.Sprint(ver)},
		"exp": &types.AttributeValueMemberN{Value: fmt.Sprint(time.Now().Add(time.Hour).Unix())},
	}
}

func TestCodecPanicIsACountedMissOnEveryReadPath(t *testing.T) {
	table := dynamolocal.TableName(t)
	n := newNode(t, table, func(o *tiered.Options[string]) { o.Codec = panicCodec{} })
	ctx := testContext(t)
	for _, k := range []string{"get", "gol", "m1", "m2"} {
		rawPut(t, table, rawValue(k, "boom-"+k, 3))
	}
	bad := rawValue("badver", "fine", 1)
	bad["ver"] = &types.AttributeValueMemberS{Value: "1"} // a foreign writer's string version
	rawPut(t, table, bad)
	if err := n.Set(ctx, "good", "g"); err != nil {
		t.Fatal(err)
	}
	corrupt := func() uint64 { return n.Stats().L2.Corrupt }

	before := corrupt()
	if v, err := n.Get(ctx, "get"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get of an item whose Decode panics = %q, %v; want ErrNotFound", v, err)
	}
	if d := corrupt() - before; d != 1 {
		t.Fatalf("Get counted %d corrupt items, want 1", d)
	}

	before = corrupt()
	loads := 0
	v, err := n.GetOrLoad(ctx, "gol", func(context.Context, string) (string, error) { loads++; return "src", nil })
	if err != nil || v != "src" || loads != 1 {
		t.Fatalf("GetOrLoad = %q, %v (loads %d); want the loader's value", v, err, loads)
	}
	if errors.Is(err, tiered.ErrLoaderPanic) {
		t.Fatalf("a codec panic was named a loader panic: %v", err)
	}
	if d := corrupt() - before; d != 1 {
		t.Fatalf("GetOrLoad (with its lease attempt) counted %d corrupt items, want exactly 1", d)
	}

	before = corrupt()
	n.awaitEvent(t, "good") // the Set's own record has dropped it from L1: GetMany reads L2
	var asked []string
	got, err := n.GetMany(ctx, []string{"m1", "good", "m2", "badver", "fresh"}, func(_ context.Context, keys []string) (map[string]string, error) {
		asked = append(asked, keys...)
		m := map[string]string{}
		for _, k := range keys {
			m[k] = "src-" + k
		}
		return m, nil
	})
	if err != nil {
		t.Fatalf("GetMany failed although only some items were corrupt: %v", err)
	}
	want := map[string]string{"m1": "src-m1", "good": "g", "m2": "src-m2", "badver": "src-badver", "fresh": "src-fresh"}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("GetMany[%s] = %q, want %q (all: %v)", k, got[k], w, got)
		}
	}
	if len(asked) != 4 {
		t.Errorf("batch loader asked for %v; want the 3 corrupt keys and the fresh one", asked)
	}
	if d := corrupt() - before; d != 3 {
		t.Fatalf("GetMany counted %d corrupt items, want 3 (two undecodable, one malformed)", d)
	}
	// A new lookup of an undecodable key counts it again, once.
	before = corrupt()
	if _, err := n.Get(ctx, "m1"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get(m1) = %v", err)
	}
	if d := corrupt() - before; d != 1 {
		t.Fatalf("a second lookup counted %d corrupt items, want 1", d)
	}
}

func TestCodecPanicOnTheStreamDropsTheEntry(t *testing.T) {
	table := dynamolocal.TableName(t)
	n := newNode(t, table, func(o *tiered.Options[string]) {
		o.Codec = panicCodec{}
		o.ReplaceOnChange = true
	})
	ctx := testContext(t)
	if err := n.Set(ctx, "s", "one"); err != nil {
		t.Fatal(err)
	}
	other := newNode(t, table, func(o *tiered.Options[string]) { o.Codec = panicCodec{}; o.ReplaceOnChange = true })
	if v, err := other.GetOrLoad(ctx, "s", constLoader("x")); err != nil || v != "one" {
		t.Fatalf("GetOrLoad = %q, %v", v, err)
	}
	before := other.Stats().L2.Corrupt
	rawPut(t, table, rawValue("s", "boom!", 50)) // NEW_IMAGE this codec panics on
	other.awaitEvent(t, "s")
	if d := other.Stats().L2.Corrupt - before; d != 1 {
		t.Fatalf("the stream record counted %d corrupt items, want 1", d)
	}
	// The process is alive, the old entry is gone, and the key is a miss
	// that goes to the loader (the L2 item is undecodable too).
	if v, err := other.GetOrLoad(ctx, "s", constLoader("reloaded")); err != nil || v != "reloaded" {
		t.Fatalf("GetOrLoad after an undecodable stream image = %q, %v; want reloaded", v, err)
	}
}

func TestLoaderGoexitGivesCallersAnError(t *testing.T) {
	n := newSemNode(t, nil)
	type res struct {
		v   string
		err error
	}
	goexit := func(context.Context, string) (string, error) { runtime.Goexit(); return "", nil }
	const callers = 3
	out := make(chan res, callers)
	for range callers {
		go func() {
			v, err := n.GetOrLoad(context.Background(), "gx", goexit) // no deadline: only an answer ends it
			out <- res{v, err}
		}()
	}
	for range callers {
		r := awaitRecv(t, out, "GetOrLoad whose loader called runtime.Goexit")
		var lpe *tiered.LoaderPanicError
		if !errors.Is(r.err, tiered.ErrLoaderGoexit) || !errors.As(r.err, &lpe) || !lpe.Goexit {
			t.Fatalf("GetOrLoad = %q, %v; want ErrLoaderGoexit", r.v, r.err)
		}
	}
	many := make(chan error, 1)
	go func() {
		_, err := n.GetMany(context.Background(), []string{"gx1", "gx2"}, func(context.Context, []string) (map[string]string, error) {
			runtime.Goexit()
			return nil, nil
		})
		many <- err
	}()
	var be *tiered.BatchError
	if err := awaitRecv(t, many, "GetMany whose batch loader called runtime.Goexit"); !errors.As(err, &be) ||
		!errors.Is(be.Errors["gx1"], tiered.ErrLoaderGoexit) || !errors.Is(be.Errors["gx2"], tiered.ErrLoaderGoexit) {
		t.Fatalf("GetMany = %v; want ErrLoaderGoexit for both keys", err)
	}
	// The cache still works.
	if v, err := n.GetOrLoad(context.Background(), "gx", constLoader("ok")); err != nil || v != "ok" {
		t.Fatalf("GetOrLoad after the Goexit = %q, %v", v, err)
	}
}

func TestCloseDuringLoadGivesErrClosedAndEveryMethodAfter(t *testing.T) {
	n := newSemNode(t, nil)
	ctx := testContext(t)
	entered := make(chan struct{})
	res := make(chan error, 1)
	go func() {
		_, err := n.GetOrLoad(ctx, "c", func(ctx context.Context, _ string) (string, error) {
			close(entered)
			<-ctx.Done() // only Close ends this load
			return "", ctx.Err()
		})
		res <- err
	}()
	awaitRecv(t, entered, "the loader")
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := awaitRecv(t, res, "GetOrLoad"); !errors.Is(err, tiered.ErrClosed) || errors.Is(err, context.Canceled) {
		t.Fatalf("GetOrLoad cut short by Close = %v; want ErrClosed", err)
	}
	if _, err := n.Get(ctx, "c"); !errors.Is(err, tiered.ErrClosed) {
		t.Errorf("Get after Close = %v", err)
	}
	if _, err := n.GetOrLoad(ctx, "c", nil); !errors.Is(err, tiered.ErrClosed) {
		t.Errorf("GetOrLoad(nil loader) after Close = %v", err)
	}
	if _, err := n.GetOrLoad(ctx, "c", constLoader("x")); !errors.Is(err, tiered.ErrClosed) {
		t.Errorf("GetOrLoad after Close = %v", err)
	}
	if _, err := n.GetMany(ctx, []string{"c"}, nil); !errors.Is(err, tiered.ErrClosed) {
		t.Errorf("GetMany(nil loader) after Close = %v", err)
	}
	if err := n.Set(ctx, "c", "x"); !errors.Is(err, tiered.ErrClosed) {
		t.Errorf("Set after Close = %v", err)
	}
	if err := n.SetWithTTL(ctx, "c", "x", -time.Second); !errors.Is(err, tiered.ErrClosed) {
		t.Errorf("SetWithTTL after Close = %v", err)
	}
	if err := n.Delete(ctx, "c"); !errors.Is(err, tiered.ErrClosed) {
		t.Errorf("Delete after Close = %v", err)
	}
}

// TestCloseEndsAGetInFlight: a Get's miss, whose fill has no LoadTimeout
// context of its own (only Close's), is ended by Close, whether it fills on
// the caller's goroutine (a ctx that cannot end) or on its own (one that can).
func TestCloseEndsAGetInFlight(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  func(testing.TB) context.Context
	}{
		{"background", func(testing.TB) context.Context { return context.Background() }},
		{"cancellable", testContext},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inj := ddbfault.New()
			inj.Add(ddbfault.Rule{Op: "GetItem", Latency: time.Hour}) // only Close ends the read
			n := faultNodeWith(t, dynamolocal.TableName(t), inj, func(o *tiered.Options[string]) {
				o.CallTimeout = time.Hour
			})
			res := make(chan error, 1)
			go func() {
				_, err := n.Get(tc.ctx(t), "g")
				res <- err
			}()
			if !awaitCond(30*time.Second, func() bool { return inj.Attempts("GetItem") > 0 }) {
				t.Fatal("the Get's GetItem never started")
			}
			closed := make(chan error, 1)
			go func() { closed <- n.Close() }()
			awaitRecv(t, closed, "Close, which waits for the Get's fill")
			if err := awaitRecv(t, res, "Get"); !errors.Is(err, tiered.ErrClosed) {
				t.Fatalf("Get cut short by Close = %v; want ErrClosed", err)
			}
		})
	}
}

func TestLoadTimeoutIsTellable(t *testing.T) {
	n := newSemNode(t, func(o *tiered.Options[string]) { o.LoadTimeout = 300 * time.Millisecond })
	ctx := testContext(t)
	waiter := func(ctx context.Context, _ string) (string, error) { <-ctx.Done(); return "", ctx.Err() }
	_, err := n.GetOrLoad(ctx, "slow", waiter)
	if !errors.Is(err, tiered.ErrLoadTimeout) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "LoadTimeout") {
		t.Fatalf("GetOrLoad past LoadTimeout = %v; want ErrLoadTimeout (and DeadlineExceeded)", err)
	}
	// The caller's own deadline: its ctx's error, without ErrLoadTimeout.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = n.GetOrLoad(short, "slow2", waiter)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, tiered.ErrLoadTimeout) {
		t.Fatalf("GetOrLoad past the caller's deadline = %v; want DeadlineExceeded alone", err)
	}
	_, err = n.GetMany(ctx, []string{"slow3"}, func(ctx context.Context, _ []string) (map[string]string, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	if !errors.Is(err, tiered.ErrLoadTimeout) {
		t.Fatalf("GetMany past LoadTimeout = %v; want ErrLoadTimeout", err)
	}
}

func TestOptionsAreCheckedByName(t *testing.T) {
	ctx := testContext(t)
	table := dynamolocal.TableName(t)
	cfg := awsConfig(t)
	bad := []struct {
		name  string
		tweak func(*tiered.Options[string])
		want  string
	}{
		{"L2TTL", func(o *tiered.Options[string]) { o.L2TTL = -time.Second }, "L2TTL"},
		{"LoadTimeout", func(o *tiered.Options[string]) { o.LoadTimeout = -time.Second }, "LoadTimeout"},
		{"LeaseWait", func(o *tiered.Options[string]) { o.LeaseWait = -time.Second }, "LeaseWait"},
		{"MaxStale", func(o *tiered.Options[string]) { o.MaxStale = -time.Second }, "MaxStale"},
		{"RefreshAhead NaN", func(o *tiered.Options[string]) { o.RefreshAhead = math.NaN() }, "RefreshAhead"},
		{"RefreshAhead past jitter", func(o *tiered.Options[string]) { o.RefreshAhead = 0.95; o.TTLJitter = 0.1 }, "1-TTLJitter"},
		{"TTLJitter NaN", func(o *tiered.Options[string]) { o.TTLJitter = math.NaN() }, "TTLJitter"},
	}
	for _, tc := range bad {
		o := tiered.Options[string]{Table: table, AWS: &cfg, CreateTable: true}
		tc.tweak(&o)
		c, err := tiered.New(ctx, o)
		if err == nil {
			_ = c.Close()
			t.Errorf("%s: New accepted it", tc.name)
			continue
		}
		if !errors.Is(err, tiered.ErrInvalidOptions) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v; want ErrInvalidOptions naming %s", tc.name, err, tc.want)
		}
	}
	// Only L1MaxTTL set, below the default L1TTL: L1TTL falls to it.
	n := newNode(t, table, func(o *tiered.Options[string]) { o.L1MaxTTL = 30 * time.Second; o.RefreshAhead = 0.85 })
	if err := n.SetWithTTL(ctx, "neg", "x", -time.Second); !errors.Is(err, tiered.ErrInvalidTTL) || !errors.Is(err, l2.ErrInvalidTTL) {
		t.Fatalf("SetWithTTL(-1s) = %v; want ErrInvalidTTL", err)
	}
	if _, err := n.Get(ctx, "neg"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("a refused SetWithTTL stored something: %v", err)
	}
}

func TestNotFoundWithoutNegativeCachingIsNotALoadError(t *testing.T) {
	n := newSemNode(t, func(o *tiered.Options[string]) { o.NegativeTTL = -1 })
	ctx := testContext(t)
	missing := func(context.Context, string) (string, error) { return "", tiered.ErrNotFound }
	for range 2 {
		if _, err := n.GetOrLoad(ctx, "nf", missing); !errors.Is(err, tiered.ErrNotFound) {
			t.Fatalf("GetOrLoad = %v; want ErrNotFound", err)
		}
	}
	if st := n.Stats(); st.Loads.Errors != 0 || st.Loads.Calls != 2 {
		t.Fatalf("Loads %d, LoadErrors %d; want 2 loads (not cached), 0 errors", st.Loads.Calls, st.Loads.Errors)
	}
}

func TestMissingTableIsATypedErrorNotAnOutage(t *testing.T) {
	table := dynamolocal.TableName(t)
	n := newNode(t, table, func(o *tiered.Options[string]) { o.BreakerFailures = 2 })
	ctx := testContext(t)
	if err := n.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	ddb := dynamodb.NewFromConfig(awsConfig(t))
	if _, err := ddb.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)}); err != nil {
		t.Fatalf("DeleteTable: %v", err)
	}
	for i := range 5 {
		for op, err := range map[string]error{"Set": n.Set(ctx, fmt.Sprint("k", i), "v"), "Delete": n.Delete(ctx, fmt.Sprint("d", i))} {
			var tm *tiered.TableMissingError
			if !errors.Is(err, tiered.ErrTableMissing) || !errors.As(err, &tm) || tm.Table != table || errors.Is(err, tiered.ErrL2Unavailable) {
				t.Fatalf("%s on a deleted table = %v; want *TableMissingError naming the table, not ErrL2Unavailable", op, err)
			}
			if !strings.Contains(err.Error(), table) || strings.Contains(err.Error(), "circuit breaker") {
				t.Fatalf("%s error %q should name the table, not the breaker", op, err)
			}
		}
		if v, err := n.GetOrLoad(ctx, fmt.Sprint("r", i), constLoader("src")); err != nil || v != "src" {
			t.Fatalf("GetOrLoad on a deleted table = %q, %v; want the loader's value", v, err)
		}
	}
	if st := n.Stats(); st.Breaker.Opens != 0 || st.Pending.Now != 0 {
		t.Fatalf("breaker opened %d times, %d pending invalidations: a missing table is not an outage", st.Breaker.Opens, st.Pending.Now)
	}
}

// pendingPair is node a, whose DynamoDB client faults can be injected into,
// and node b, healthy, on one table.
func pendingPair(t *testing.T, tweak func(*tiered.Options[string])) (a, b *node, inj *ddbfault.Injector) {
	cfg := awsConfig(t)
	table := dynamolocal.TableName(t)
	inj = ddbfault.New()
	b = newNode(t, table, nil)
	a = newNodeAt(t, cfg, table, func(o *tiered.Options[string]) {
		o.DynamoDB = l2.NewClient(cfg, inj.Options)
		if tweak != nil {
			tweak(o)
		}
	})
	return a, b, inj
}

// seed has b write key=value and a hold it in L1 (with its version).
func seed(t *testing.T, a, b *node, key, value string) {
	t.Helper()
	ctx := testContext(t)
	if err := b.Set(ctx, key, value); err != nil {
		t.Fatal(err)
	}
	a.awaitEvent(t, key) // b's record reached a: a's next read fills L1 from L2
	if v, err := a.Get(ctx, key); err != nil || v != value {
		t.Fatalf("a.Get = %q, %v", v, err)
	}
}

func tableValue(t *testing.T, table, key string) (string, error) {
	it, err := l2Table(t, table).Get(testContext(t), key)
	return string(it.Value), err
}

var errNetwork = errors.New("connection reset by peer (ddbfault)")

func TestFailedSetLeavesAPendingInvalidationThatLands(t *testing.T) {
	a, b, inj := pendingPair(t, nil)
	ctx := testContext(t)
	seed(t, a, b, "k", "old")
	drain(b.events)
	remove := inj.Add(ddbfault.Rule{Op: "UpdateItem", Err: errNetwork})
	if err := a.Set(ctx, "k", "new"); !errors.Is(err, tiered.ErrL2Unavailable) {
		t.Fatalf("Set during the fault = %v; want ErrL2Unavailable", err)
	}
	if v, err := tableValue(t, a.tableName, "k"); err != nil || v != "old" {
		t.Fatalf("table = %q, %v; want the old value still there", v, err)
	}
	if st := a.Stats(); st.Pending.Now != 1 || st.Pending.Added != 1 {
		t.Fatalf("pending %d, added %d; want 1 and 1", st.Pending.Now, st.Pending.Added)
	}
	// While pending, a does not serve the old value from L2: Get cannot
	// answer (the key may well exist: ErrL2Unavailable, not ErrNotFound),
	// GetOrLoad goes to the loader, and its load is not written to L2.
	if v, err := a.Get(ctx, "k"); !errors.Is(err, tiered.ErrL2Unavailable) || errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("a.Get while pending = %q, %v; want ErrL2Unavailable, not the old L2 value", v, err)
	}
	if v, err := a.GetOrLoad(ctx, "k2", constLoader("x")); err != nil || v != "x" {
		t.Fatalf("unrelated GetOrLoad = %q, %v", v, err) // other keys unaffected
	}
	remove()
	if !awaitCond(30*time.Second, func() bool { return a.Stats().Pending.Landed == 1 }) {
		t.Fatalf("the pending invalidation never landed: %+v", a.Stats())
	}
	if _, err := tableValue(t, a.tableName, "k"); !errors.Is(err, l2.ErrNotFound) {
		t.Fatalf("table after the retry: %v; want the old value superseded by a tombstone", err)
	}
	b.awaitGone(t, "k") // the other node sees the new state (a miss: its loader has the truth)
	if v, err := b.GetOrLoad(ctx, "k", constLoader("new")); err != nil || v != "new" {
		t.Fatalf("b.GetOrLoad = %q, %v", v, err)
	}
	if st := a.Stats(); st.Pending.Now != 0 || st.Pending.Retries == 0 {
		t.Fatalf("pending %d, retries %d after landing", st.Pending.Now, st.Pending.Retries)
	}
}

func TestPendingInvalidationNeverOverwritesANewerWrite(t *testing.T) {
	a, b, inj := pendingPair(t, nil)
	ctx := testContext(t)
	seed(t, a, b, "k", "old")
	remove := inj.Add(ddbfault.Rule{Op: "UpdateItem", Err: errNetwork})
	if err := a.Delete(ctx, "k"); !errors.Is(err, tiered.ErrL2Unavailable) {
		t.Fatalf("Delete during the fault = %v", err)
	}
	if err := b.Set(ctx, "k", "newer"); err != nil { // another node, during a's outage
		t.Fatal(err)
	}
	remove()
	if !awaitCond(30*time.Second, func() bool { return a.Stats().Pending.Now == 0 }) {
		t.Fatalf("the pending invalidation never ended: %+v", a.Stats())
	}
	if st := a.Stats(); st.Pending.Landed != 0 || st.Pending.Superseded != 1 {
		t.Fatalf("landed %d, superseded %d; want the newer write to make it moot", st.Pending.Landed, st.Pending.Superseded)
	}
	if v, err := tableValue(t, a.tableName, "k"); err != nil || v != "newer" {
		t.Fatalf("table = %q, %v; the retry overwrote the newer write", v, err)
	}
	a.awaitValue(t, "k", "newer")
}

// logBuffer is a slog handler target safe for concurrent writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestPendingOverflowIsCountedLoggedAndNotServedFromL2(t *testing.T) {
	var logs logBuffer
	a, b, inj := pendingPair(t, func(o *tiered.Options[string]) {
		o.MaxPendingInvalidations = 1
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	ctx := testContext(t)
	seed(t, a, b, "k1", "old1")
	seed(t, a, b, "k2", "old2")
	inj.Add(ddbfault.Rule{Op: "UpdateItem", Err: errNetwork}) // until the test ends
	for _, k := range []string{"k1", "k2"} {
		if err := a.Set(ctx, k, "new"); !errors.Is(err, tiered.ErrL2Unavailable) {
			t.Fatalf("Set(%s) = %v", k, err)
		}
	}
	st := a.Stats()
	if st.Pending.Now != 1 || st.Pending.Dropped != 1 {
		t.Fatalf("pending %d, dropped %d; want 1 and 1", st.Pending.Now, st.Pending.Dropped)
	}
	if !strings.Contains(logs.String(), "pending invalidations full") {
		t.Fatalf("overflow not logged; log:\n%s", logs.String())
	}
	for _, k := range []string{"k1", "k2"} {
		if v, err := a.GetOrLoad(ctx, k, constLoader("src")); err != nil || v != "src" {
			t.Fatalf("a.GetOrLoad(%s) = %q, %v; want the loader's value, not L2's old one", k, v, err)
		}
	}
	if v, err := tableValue(t, a.tableName, "k2"); err != nil || v != "old2" {
		t.Fatalf("table k2 = %q, %v; a's load must not be written over it", v, err)
	}
}

func TestCodecPanicInRefreshAheadIsACountedMiss(t *testing.T) {
	table := dynamolocal.TableName(t)
	clock := &tiered.TestClock{}
	n := newNode(t, table, func(o *tiered.Options[string]) {
		tiered.SetTestClock(o, clock)
		o.Codec = panicCodec{}
		o.L1TTL = 2 * time.Second
		o.RefreshAhead = 0.25 // refreshSoftTTL
		o.TTLJitter = -1
		o.DisableLeases = true
		o.DisableInvalidation = true // the foreign write below must not evict the entry
	})
	ctx := testContext(t)
	reloaded := make(chan struct{}, 2)
	calls := 0
	loader := func(context.Context, string) (string, error) {
		calls++
		reloaded <- struct{}{}
		return fmt.Sprint("v", calls), nil
	}
	if v, err := n.GetOrLoad(ctx, "r", loader); err != nil || v != "v1" {
		t.Fatalf("GetOrLoad = %q, %v", v, err)
	}
	<-reloaded
	rawPut(t, table, rawValue("r", "boom-newer", 40)) // a newer version the codec panics on
	before := n.Stats().L2.Corrupt
	pastSoftTTL(clock)
	if v, err := n.GetOrLoad(ctx, "r", loader); err != nil || v != "v1" {
		t.Fatalf("hit past the soft TTL = %q, %v; want v1 at once", v, err)
	}
	awaitRecv(t, reloaded, "the refresh to reach the loader past the undecodable L2 version")
	if !awaitCond(30*time.Second, func() bool { return n.Stats().L2.Corrupt-before == 1 }) {
		t.Fatalf("refresh counted %d corrupt items, want 1", n.Stats().L2.Corrupt-before)
	}
	if st := n.Stats(); st.Loads.Panics != 0 || st.Refresh.FromL2 != 0 {
		t.Fatalf("LoadPanics %d, RefreshesFromL2 %d; a codec panic is neither", st.Loads.Panics, st.Refresh.FromL2)
	}
}

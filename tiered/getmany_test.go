package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/ddbfault"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

// manyNode is a node whose L1 only changes by its own calls: with the stream
// on, a node drops even what it just filled (its own fill's record).
func manyNode(t *testing.T, tweak func(*tiered.Options[string])) *node {
	t.Helper()
	return newSemNode(t, func(o *tiered.Options[string]) {
		o.DisableInvalidation = true
		if tweak != nil {
			tweak(o)
		}
	})
}

// manyLoader is a BatchLoader that records the keys of each call (sorted)
// and answers "<prefix><key>" for every key but those in omit.
type manyLoader struct {
	prefix string
	omit   map[string]bool
	mu     sync.Mutex
	calls  [][]string
}

func (l *manyLoader) load(_ context.Context, keys []string) (map[string]string, error) {
	l.mu.Lock()
	l.calls = append(l.calls, slices.Sorted(slices.Values(keys)))
	l.mu.Unlock()
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		if !l.omit[k] {
			m[k] = l.prefix + k
		}
	}
	return m, nil
}

func (l *manyLoader) Calls() [][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

// manyBlock holds a loader until release is closed; a loader's ctx ends
// only with its load (LoadTimeout, Close), which lets a failed test's
// cleanup close the node instead of hanging.
func manyBlock(ctx context.Context, release <-chan struct{}) error {
	select {
	case <-release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type manyResult struct {
	m   map[string]string
	err error
}

func goGetMany(ctx context.Context, n *node, keys []string, loader tiered.BatchLoader[string]) <-chan manyResult {
	ch := make(chan manyResult, 1)
	go func() {
		m, err := n.GetMany(ctx, keys, loader)
		ch <- manyResult{m, err}
	}()
	return ch
}

func TestGetManyMixesTiersAndLoadsTheRestOnce(t *testing.T) {
	n := manyNode(t, nil)
	ctx := testContext(t)
	tbl := n.table(t)
	for _, k := range []string{"h1", "h2"} { // in L1 (and L2)
		if _, err := n.GetOrLoad(ctx, k, constLoader("v-"+k)); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"l2a", "l2b"} { // only in L2
		if _, err := tbl.Put(ctx, k, []byte("v-"+k), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	keys := []string{"h1", "l2a", "m1", "h2", "l2b", "m2", "m3", "m1", "h1"} // duplicates too
	want := map[string]string{
		"h1": "v-h1", "h2": "v-h2", "l2a": "v-l2a", "l2b": "v-l2b",
		"m1": "loaded-m1", "m2": "loaded-m2", "m3": "loaded-m3",
	}
	before := n.Stats()
	batchGets, getItems, updates := n.ops.get("BatchGetItem"), n.ops.get("GetItem"), n.ops.get("UpdateItem")
	loader := &manyLoader{prefix: "loaded-"}
	got, err := n.GetMany(ctx, keys, loader.load)
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("GetMany = %v, %v; want %v", got, err, want)
	}
	if calls := loader.Calls(); len(calls) != 1 || !slices.Equal(calls[0], []string{"m1", "m2", "m3"}) {
		t.Fatalf("batch loader calls = %v; want one call with exactly [m1 m2 m3]", calls)
	}
	if d := n.ops.get("BatchGetItem") - batchGets; d != 1 {
		t.Errorf("BatchGetItem calls = %d, want 1 (for l2a, l2b and the misses)", d)
	}
	if d := n.ops.get("GetItem") - getItems; d != 0 {
		t.Errorf("GetItem calls = %d, want 0: GetMany reads L2 in batches", d)
	}
	if d := n.ops.get("UpdateItem") - updates; d != 3 {
		t.Errorf("UpdateItem calls = %d, want 3 (one conditional fill per loaded key)", d)
	}
	after := n.Stats()
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"L2Hits", after.L2.Hits - before.L2.Hits, 2},
		{"L2Misses", after.L2.Misses - before.L2.Misses, 3},
		{"Loads", after.Loads.Calls - before.Loads.Calls, 1},
		{"BatchLoads", after.Loads.Batches - before.Loads.Batches, 1},
		{"BatchLoadKeys", after.Loads.BatchKeys - before.Loads.BatchKeys, 3},
		{"LoadErrors", after.Loads.Errors - before.Loads.Errors, 0},
	} {
		if c.got != c.want {
			t.Errorf("Stats().%s grew by %d, want %d", c.name, c.got, c.want)
		}
	}

	// Everything is in L1 now: no DynamoDB call, no load.
	batchGets = n.ops.get("BatchGetItem")
	got, err = n.GetMany(ctx, keys, loader.load)
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("second GetMany = %v, %v; want %v", got, err, want)
	}
	if d := n.ops.get("BatchGetItem") - batchGets; d != 0 || len(loader.Calls()) != 1 {
		t.Fatalf("second GetMany made %d BatchGetItem calls and %d loader calls; want 0 and 0", d, len(loader.Calls())-1)
	}

	// The loaded values reached L2: another node reads them all from there.
	m := n.peer(t, func(o *tiered.Options[string]) { o.DisableInvalidation = true })
	other := &manyLoader{prefix: "other-"}
	got, err = m.GetMany(ctx, keys, other.load)
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("other node's GetMany = %v, %v; want %v", got, err, want)
	}
	if len(other.Calls()) != 0 || m.Stats().L2.Hits != uint64(len(want)) {
		t.Fatalf("other node: %d loader calls, %d L2 hits; want 0 and %d", len(other.Calls()), m.Stats().L2.Hits, len(want))
	}
}

func TestGetManySplitsBatchGetItemAt100Keys(t *testing.T) {
	n := manyNode(t, nil)
	ctx := testContext(t)
	keys := make([]string, 250)
	want := make(map[string]string, len(keys))
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
		want[keys[i]] = "v-" + keys[i]
	}
	loader := &manyLoader{prefix: "v-"}
	batchGets := n.ops.get("BatchGetItem")
	got, err := n.GetMany(ctx, keys, loader.load)
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("GetMany of 250 keys: %d values, %v", len(got), err)
	}
	if d := n.ops.get("BatchGetItem") - batchGets; d != 3 {
		t.Errorf("BatchGetItem calls = %d, want 3 for 250 keys (at most 100 a call)", d)
	}
	if calls := loader.Calls(); len(calls) != 1 || len(calls[0]) != 250 {
		t.Fatalf("batch loader calls = %d (first with %d keys); want one with all 250", len(calls), len(calls[0]))
	}

	// A second node finds all 250 in L2, in 3 calls again, and loads nothing.
	m := n.peer(t, func(o *tiered.Options[string]) { o.DisableInvalidation = true })
	other := &manyLoader{prefix: "other-"}
	got, err = m.GetMany(ctx, keys, other.load)
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("other node's GetMany: %d values, %v", len(got), err)
	}
	if d := m.ops.get("BatchGetItem"); d != 3 || len(other.Calls()) != 0 {
		t.Fatalf("other node: %d BatchGetItem calls, %d loader calls; want 3 and 0", d, len(other.Calls()))
	}
}

func TestGetManyJoinsLoadsInFlight(t *testing.T) {
	t.Run("GetOrLoad in flight", func(t *testing.T) {
		n := manyNode(t, nil)
		ctx := testContext(t)
		entered, release := make(chan struct{}), make(chan struct{})
		single := make(chan manyResult, 1)
		var singleCalls int
		go func() {
			v, err := n.GetOrLoad(ctx, "shared", func(ctx context.Context, _ string) (string, error) {
				singleCalls++
				close(entered)
				if err := manyBlock(ctx, release); err != nil {
					return "", err
				}
				return "from-single", nil
			})
			single <- manyResult{map[string]string{"shared": v}, err}
		}()
		awaitRecv(t, entered, "the GetOrLoad loader")

		calls := make(chan []string, 2)
		res := goGetMany(ctx, n, []string{"shared", "other"}, func(_ context.Context, keys []string) (map[string]string, error) {
			calls <- slices.Clone(keys)
			return map[string]string{"other": "from-batch"}, nil
		})
		// The batch loader runs only after GetMany claimed its keys, so
		// "shared" was joined (not claimed) by then.
		if keys := awaitRecv(t, calls, "the batch loader"); !slices.Equal(keys, []string{"other"}) {
			t.Fatalf("batch loader got %v; want only [other]: shared is being loaded by GetOrLoad", keys)
		}
		close(release)
		r := awaitRecv(t, res, "GetMany")
		want := map[string]string{"shared": "from-single", "other": "from-batch"}
		if r.err != nil || !maps.Equal(r.m, want) {
			t.Fatalf("GetMany = %v, %v; want %v", r.m, r.err, want)
		}
		if s := awaitRecv(t, single, "GetOrLoad"); s.err != nil || s.m["shared"] != "from-single" {
			t.Fatalf("GetOrLoad = %v, %v", s.m, s.err)
		}
		if singleCalls != 1 || len(calls) != 0 {
			t.Fatalf("loader calls: single %d, batch %d more; want 1 and 0", singleCalls, len(calls))
		}
		if j := n.Stats().Loads.Joined; j != 1 {
			t.Fatalf("Stats().Loads.Joined = %d, want 1", j)
		}
	})

	t.Run("overlapping GetMany", func(t *testing.T) {
		n := manyNode(t, nil)
		ctx := testContext(t)
		entered, release := make(chan []string, 1), make(chan struct{})
		first := goGetMany(ctx, n, []string{"a", "s"}, func(ctx context.Context, keys []string) (map[string]string, error) {
			entered <- slices.Sorted(slices.Values(keys))
			if err := manyBlock(ctx, release); err != nil {
				return nil, err
			}
			return map[string]string{"a": "one-a", "s": "one-s"}, nil
		})
		if keys := awaitRecv(t, entered, "the first batch loader"); !slices.Equal(keys, []string{"a", "s"}) {
			t.Fatalf("first batch loader got %v, want [a s]", keys)
		}
		calls := make(chan []string, 2)
		second := goGetMany(ctx, n, []string{"s", "b"}, func(_ context.Context, keys []string) (map[string]string, error) {
			calls <- slices.Clone(keys)
			return map[string]string{"b": "two-b", "s": "two-s"}, nil
		})
		if keys := awaitRecv(t, calls, "the second batch loader"); !slices.Equal(keys, []string{"b"}) {
			t.Fatalf("second batch loader got %v; want only [b]: s is being loaded by the first GetMany", keys)
		}
		close(release)
		r1, r2 := awaitRecv(t, first, "first GetMany"), awaitRecv(t, second, "second GetMany")
		if want := map[string]string{"a": "one-a", "s": "one-s"}; r1.err != nil || !maps.Equal(r1.m, want) {
			t.Fatalf("first GetMany = %v, %v; want %v", r1.m, r1.err, want)
		}
		if want := map[string]string{"s": "one-s", "b": "two-b"}; r2.err != nil || !maps.Equal(r2.m, want) {
			t.Fatalf("second GetMany = %v, %v; want %v (s from the first load)", r2.m, r2.err, want)
		}
		if len(calls) != 0 {
			t.Fatalf("the second batch loader was called again")
		}
	})

	t.Run("GetOrLoad joins a GetMany", func(t *testing.T) {
		n := manyNode(t, nil)
		ctx := testContext(t)
		entered, release := make(chan struct{}), make(chan struct{})
		res := goGetMany(ctx, n, []string{"k"}, func(ctx context.Context, _ []string) (map[string]string, error) {
			close(entered)
			if err := manyBlock(ctx, release); err != nil {
				return nil, err
			}
			return map[string]string{"k": "from-batch"}, nil
		})
		awaitRecv(t, entered, "the batch loader")
		single := make(chan manyResult, 1)
		singleCalled := make(chan struct{}, 1)
		go func() {
			v, err := n.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) {
				singleCalled <- struct{}{}
				return "from-single", nil
			})
			single <- manyResult{map[string]string{"k": v}, err}
		}()
		// Release the batch only once the GetOrLoad flight is waiting on it.
		waitFor(t, 30*time.Second, "GetOrLoad to join the GetMany's load", func() bool { return n.Stats().Loads.Joined == 1 })
		close(release)
		if s := awaitRecv(t, single, "GetOrLoad"); s.err != nil || s.m["k"] != "from-batch" {
			t.Fatalf("GetOrLoad = %v, %v; want the batch's value", s.m, s.err)
		}
		if r := awaitRecv(t, res, "GetMany"); r.err != nil || r.m["k"] != "from-batch" {
			t.Fatalf("GetMany = %v, %v", r.m, r.err)
		}
		if len(singleCalled) != 0 {
			t.Fatalf("GetOrLoad's loader ran although a GetMany was loading the key")
		}
	})
}

func TestGetManyBadKeysFailAlone(t *testing.T) {
	n := manyNode(t, nil)
	ctx := testContext(t)
	long := strings.Repeat("k", 3000)
	loader := &manyLoader{prefix: "v-"}
	got, err := n.GetMany(ctx, []string{"", "good1", "bad\xff\xfe", long, "good2"}, loader.load)
	if want := map[string]string{"good1": "v-good1", "good2": "v-good2"}; !maps.Equal(got, want) {
		t.Fatalf("GetMany values = %v; want %v", got, want)
	}
	var be *tiered.BatchError
	if !errors.As(err, &be) || len(be.Errors) != 3 {
		t.Fatalf("GetMany error = %v; want a *BatchError with 3 keys", err)
	}
	for key, want := range map[string]error{"": l2.ErrEmptyKey, "bad\xff\xfe": l2.ErrInvalidKey, long: l2.ErrKeyTooLong} {
		if !errors.Is(be.Errors[key], want) {
			t.Errorf("error for a bad key = %v, want %v", be.Errors[key], want)
		}
		if !errors.Is(err, want) {
			t.Errorf("errors.Is(GetMany's error, %v) = false", want)
		}
	}
	var tooLong *l2.KeyTooLongError
	if !errors.As(err, &tooLong) || tooLong.Len != 3001 {
		t.Errorf("errors.As(*l2.KeyTooLongError) = %+v", tooLong)
	}
	if strings.Contains(err.Error(), "kkkk") || strings.Contains(err.Error(), "good") {
		t.Errorf("error message names a key: %q", err)
	}
	if calls := loader.Calls(); len(calls) != 1 || !slices.Equal(calls[0], []string{"good1", "good2"}) {
		t.Fatalf("batch loader calls = %v; want one with [good1 good2]", calls)
	}

	// Only bad keys, or none at all: no DynamoDB call, no load.
	batchGets := n.ops.get("BatchGetItem")
	if got, err := n.GetMany(ctx, []string{""}, loader.load); len(got) != 0 || !errors.Is(err, l2.ErrEmptyKey) {
		t.Fatalf("GetMany of an empty key = %v, %v", got, err)
	}
	if got, err := n.GetMany(ctx, nil, loader.load); got == nil || len(got) != 0 || err != nil {
		t.Fatalf("GetMany of no keys = %v, %v; want an empty map", got, err)
	}
	if n.ops.get("BatchGetItem") != batchGets || len(loader.Calls()) != 1 {
		t.Fatalf("GetMany without valid keys called DynamoDB or the loader")
	}
	if m, err := n.GetMany(ctx, []string{"x"}, nil); m != nil || !errors.Is(err, tiered.ErrNilLoader) {
		t.Fatalf("GetMany without a loader = %v, %v; want ErrNilLoader", m, err)
	}
}

func TestGetManyLoaderErrorsAreNotCached(t *testing.T) {
	n := manyNode(t, nil)
	ctx := testContext(t)
	tbl := n.table(t)
	if _, err := tbl.Put(ctx, "hit", []byte("v-hit"), time.Minute); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("source down")
	calls := 0
	failing := func(context.Context, []string) (map[string]string, error) {
		calls++
		return map[string]string{"a": "ignored"}, boom
	}
	got, err := n.GetMany(ctx, []string{"hit", "a", "b"}, failing)
	var be *tiered.BatchError
	if !errors.As(err, &be) || len(be.Errors) != 2 || !errors.Is(be.Errors["a"], boom) || !errors.Is(be.Errors["b"], boom) {
		t.Fatalf("GetMany with a failing loader: %v; want *BatchError with a and b failing", err)
	}
	if want := map[string]string{"hit": "v-hit"}; !maps.Equal(got, want) {
		t.Fatalf("GetMany values = %v; want only the L2 hit %v", got, want)
	}
	if s := n.Stats(); s.Loads.Errors != 1 {
		t.Errorf("Stats().Loads.Errors = %d, want 1", s.Loads.Errors)
	}
	for _, k := range []string{"a", "b"} {
		if _, err := tbl.Get(ctx, k); !errors.Is(err, l2.ErrNotFound) {
			t.Errorf("a failed load left %s in L2: %v", k, err)
		}
	}
	// Nothing was cached: the next call loads both again.
	loader := &manyLoader{prefix: "v-"}
	got, err = n.GetMany(ctx, []string{"hit", "a", "b"}, loader.load)
	if err != nil || len(got) != 3 {
		t.Fatalf("GetMany after the failure = %v, %v", got, err)
	}
	if c := loader.Calls(); len(c) != 1 || !slices.Equal(c[0], []string{"a", "b"}) {
		t.Fatalf("loader calls after a failure = %v; want [[a b]]", c)
	}

	t.Run("per-key errors", func(t *testing.T) {
		perKey := func(_ context.Context, keys []string) (map[string]string, error) {
			return map[string]string{"p1": "v-p1", "p2": "ignored"},
				&tiered.BatchError{Errors: map[string]error{"p2": boom, "p3": fmt.Errorf("gone: %w", tiered.ErrNotFound)}}
		}
		got, err := n.GetMany(ctx, []string{"p1", "p2", "p3", "p4"}, perKey)
		var be *tiered.BatchError
		if !errors.As(err, &be) || len(be.Errors) != 1 || !errors.Is(be.Errors["p2"], boom) {
			t.Fatalf("GetMany = %v; want *BatchError for p2 only", err)
		}
		if want := map[string]string{"p1": "v-p1"}; !maps.Equal(got, want) {
			t.Fatalf("GetMany values = %v; want %v (p3, p4 not found)", got, want)
		}
		// p1 found, p3 and p4 not found: cached. p2 failed: loaded again.
		again := &manyLoader{prefix: "v-"}
		got, err = n.GetMany(ctx, []string{"p1", "p2", "p3", "p4"}, again.load)
		if want := map[string]string{"p1": "v-p1", "p2": "v-p2"}; err != nil || !maps.Equal(got, want) {
			t.Fatalf("second GetMany = %v, %v; want %v", got, err, want)
		}
		if c := again.Calls(); len(c) != 1 || !slices.Equal(c[0], []string{"p2"}) {
			t.Fatalf("second loader calls = %v; want [[p2]]", c)
		}
	})

	t.Run("panic", func(t *testing.T) {
		got, err := n.GetMany(ctx, []string{"x1", "x2"}, func(context.Context, []string) (map[string]string, error) {
			panic("batch loader bug")
		})
		var be *tiered.BatchError
		var pe *tiered.LoaderPanicError
		if len(got) != 0 || !errors.As(err, &be) || len(be.Errors) != 2 || !errors.Is(err, tiered.ErrLoaderPanic) ||
			!errors.As(be.Errors["x1"], &pe) || pe.Value != "batch loader bug" {
			t.Fatalf("GetMany with a panicking loader = %v, %v; want *LoaderPanicError per key", got, err)
		}
		if s := n.Stats(); s.Loads.Panics != 1 {
			t.Errorf("Stats().Loads.Panics = %d, want 1", s.Loads.Panics)
		}
	})
}

func TestGetManyCachesOmittedKeysAsNotFound(t *testing.T) {
	n := manyNode(t, nil)
	ctx := testContext(t)
	loader := &manyLoader{prefix: "v-", omit: map[string]bool{"gone1": true, "gone2": true}}
	keys := []string{"here", "gone1", "gone2"}
	got, err := n.GetMany(ctx, keys, loader.load)
	if want := map[string]string{"here": "v-here"}; err != nil || !maps.Equal(got, want) {
		t.Fatalf("GetMany = %v, %v; want %v and no error", got, err, want)
	}
	batchGets := n.ops.get("BatchGetItem")
	got, err = n.GetMany(ctx, keys, loader.load)
	if want := map[string]string{"here": "v-here"}; err != nil || !maps.Equal(got, want) {
		t.Fatalf("second GetMany = %v, %v; want %v", got, err, want)
	}
	if len(loader.Calls()) != 1 || n.ops.get("BatchGetItem") != batchGets {
		t.Fatalf("second GetMany: %d loader calls, %d BatchGetItem calls; want 1 and 0 (not-found cached in L1)",
			len(loader.Calls()), n.ops.get("BatchGetItem")-batchGets)
	}
	if _, err := n.Get(ctx, "gone1"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get of an omitted key = %v, want ErrNotFound", err)
	}
	// In L2 as a negative entry, for NegativeTTL.
	it, err := n.table(t).Get(ctx, "gone2")
	if err != nil || !it.NotFound || it.ExpiresAt.After(time.Now().Add(tiered.DefaultNegativeTTL+time.Second)) {
		t.Fatalf("L2 holds %+v, %v for an omitted key; want a negative entry living NegativeTTL", it, err)
	}

	// NegativeTTL < 0: not found is answered, never cached.
	m := manyNode(t, func(o *tiered.Options[string]) { o.NegativeTTL = -1 })
	none := &manyLoader{omit: map[string]bool{"nf": true}}
	for range 2 {
		if got, err := m.GetMany(ctx, []string{"nf"}, none.load); err != nil || len(got) != 0 {
			t.Fatalf("GetMany with NegativeTTL < 0 = %v, %v", got, err)
		}
	}
	if len(none.Calls()) != 2 {
		t.Fatalf("loader calls = %d, want 2: a not-found must not be cached with NegativeTTL < 0", len(none.Calls()))
	}
}

func TestGetManyFillsOnlyOverTheVersionSeen(t *testing.T) {
	n := manyNode(t, nil)
	ctx := testContext(t)
	tbl := n.table(t)
	// A deleted key leaves a tombstone with a version: the fill must land
	// over it (BatchGetItem reported that version).
	if err := n.Set(ctx, "d", "old"); err != nil {
		t.Fatal(err)
	}
	if err := n.Delete(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if got, err := n.GetMany(ctx, []string{"d"}, (&manyLoader{prefix: "new-"}).load); err != nil || got["d"] != "new-d" {
		t.Fatalf("GetMany after Delete = %v, %v", got, err)
	}
	if it, err := tbl.Get(ctx, "d"); err != nil || string(it.Value) != "new-d" {
		t.Fatalf("L2 after filling over a tombstone = %+v, %v; want new-d", it, err)
	}

	// A Delete landing while the batch loads: the caller gets what the
	// source said, but neither tier keeps it.
	if err := n.Delete(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	res := goGetMany(ctx, n, []string{"d"}, func(ctx context.Context, _ []string) (map[string]string, error) {
		close(entered)
		if err := manyBlock(ctx, release); err != nil {
			return nil, err
		}
		return map[string]string{"d": "loaded-before-delete"}, nil
	})
	awaitRecv(t, entered, "the batch loader")
	if err := n.Delete(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if r := awaitRecv(t, res, "GetMany"); r.err != nil || r.m["d"] != "loaded-before-delete" {
		t.Fatalf("GetMany = %v, %v", r.m, r.err)
	}
	if it, err := tbl.Get(ctx, "d"); !errors.Is(err, l2.ErrNotFound) {
		t.Fatalf("a fill that began before a Delete landed in L2: %+v, %v", it, err)
	}
	if v, err := n.Get(ctx, "d"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("a fill that began before a Delete landed in L1: %q, %v", v, err)
	}
	if s := n.Stats(); s.Loads.StaleFillsDropped != 1 {
		t.Fatalf("Stats().Loads.StaleFillsDropped = %d, want 1", s.Loads.StaleFillsDropped)
	}
}

func TestGetManyCallerCancelLeavesTheLoadRunning(t *testing.T) {
	n := manyNode(t, nil)
	ctx := testContext(t)
	callerCtx, cancel := context.WithCancel(ctx)
	entered, release := make(chan struct{}), make(chan struct{})
	res := goGetMany(callerCtx, n, []string{"c1", "c2"}, func(ctx context.Context, keys []string) (map[string]string, error) {
		close(entered)
		if err := manyBlock(ctx, release); err != nil {
			return nil, err // the load must not see the caller's cancellation
		}
		return map[string]string{"c1": "v1", "c2": "v2"}, nil
	})
	awaitRecv(t, entered, "the batch loader")
	cancel()
	if r := awaitRecv(t, res, "the cancelled GetMany"); r.m != nil || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled GetMany = %v, %v; want nil, context.Canceled", r.m, r.err)
	}
	// A second caller joins the load still running and gets its values.
	again := &manyLoader{prefix: "again-"}
	second := goGetMany(ctx, n, []string{"c1", "c2"}, again.load)
	waitFor(t, 30*time.Second, "the second GetMany to join the load", func() bool { return n.Stats().Loads.Joined == 2 })
	close(release)
	r := awaitRecv(t, second, "the second GetMany")
	if want := map[string]string{"c1": "v1", "c2": "v2"}; r.err != nil || !maps.Equal(r.m, want) {
		t.Fatalf("second GetMany = %v, %v; want %v from the first load", r.m, r.err, want)
	}
	if len(again.Calls()) != 0 {
		t.Fatalf("the second GetMany loaded again: %v", again.Calls())
	}
}

// faultNode is a node of table, without stream, whose DynamoDB client goes
// through inj.
func faultNode(t *testing.T, table string, inj *ddbfault.Injector) *node {
	t.Helper()
	return faultNodeWith(t, table, inj, nil)
}

// faultNodeWith is faultNode with tweak applied to its options last.
func faultNodeWith(t *testing.T, table string, inj *ddbfault.Injector, tweak func(*tiered.Options[string])) *node {
	t.Helper()
	cfg := awsConfig(t)
	return newNode(t, table, func(o *tiered.Options[string]) {
		o.DisableInvalidation = true
		o.DynamoDB = l2.NewClient(cfg, inj.Options)
		if tweak != nil {
			tweak(o)
		}
	})
}

func TestGetManyUnprocessedKeysAndOutage(t *testing.T) {
	inj := ddbfault.New()
	n := faultNode(t, dynamolocal.TableName(t), inj)
	ctx := testContext(t)
	tbl := l2Table(t, n.tableName)
	keys := make([]string, 150)
	want := make(map[string]string, len(keys))
	for i := range keys {
		keys[i] = "u" + strconv.Itoa(i)
		want[keys[i]] = "v-" + keys[i]
		if _, err := tbl.Put(ctx, keys[i], []byte(want[keys[i]]), time.Minute); err != nil {
			t.Fatal(err)
		}
	}

	// Two calls come back with 40 keys unprocessed each: retried, all read.
	inj.Add(ddbfault.Rule{Op: "BatchGetItem", Unprocessed: 40, Times: 2})
	loader := &manyLoader{prefix: "loaded-"}
	calls := inj.Calls("BatchGetItem")
	got, err := n.GetMany(ctx, keys, loader.load)
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("GetMany with UnprocessedKeys: %d values, %v", len(got), err)
	}
	if d := inj.Calls("BatchGetItem") - calls; d != 4 || len(loader.Calls()) != 0 {
		t.Fatalf("BatchGetItem calls = %d, loader calls = %d; want 2 + 2 retries and 0", d, len(loader.Calls()))
	}

	t.Run("keys never processed are loaded", func(t *testing.T) {
		m := faultNode(t, n.tableName, inj)
		remove := inj.Add(ddbfault.Rule{Op: "BatchGetItem", Unprocessed: 3})
		defer remove()
		loader := &manyLoader{prefix: "loaded-"}
		updates := inj.Calls("UpdateItem")
		got, err := m.GetMany(ctx, keys, loader.load)
		if err != nil || len(got) != len(keys) {
			t.Fatalf("GetMany with persistent UnprocessedKeys: %d values, %v; want all %d", len(got), err, len(keys))
		}
		// The first chunk gives up on its last 3 keys, the second chunk is
		// not asked: those 53 are loaded, and kept in L1 only.
		c := loader.Calls()
		if len(c) != 1 || len(c[0]) != 53 {
			t.Fatalf("loader calls = %d, keys %d; want one call with the 53 unread keys", len(c), len(c[0]))
		}
		for _, k := range c[0] {
			if got[k] != "loaded-"+k {
				t.Fatalf("unread key has %q, want the loaded value", got[k])
			}
		}
		if d := inj.Calls("UpdateItem") - updates; d != 0 {
			t.Fatalf("%d L2 writes for keys L2 could not read; want none", d)
		}
	})

	t.Run("DynamoDB down", func(t *testing.T) {
		m := faultNode(t, n.tableName, inj)
		inj.Reset()
		defer inj.Reset()
		inj.Add(ddbfault.Rule{Err: errors.New("connection refused")})
		fresh := []string{"down1", "down2", "down3"}
		loader := &manyLoader{prefix: "loaded-"}
		got, err := m.GetMany(ctx, fresh, loader.load)
		want := map[string]string{"down1": "loaded-down1", "down2": "loaded-down2", "down3": "loaded-down3"}
		if err != nil || !maps.Equal(got, want) {
			t.Fatalf("GetMany with DynamoDB down = %v, %v; want %v", got, err, want)
		}
		if s := m.Stats(); s.L2.Errors == 0 || len(loader.Calls()) != 1 {
			t.Fatalf("L2Errors = %d, loader calls = %d; want > 0 and 1", s.L2.Errors, len(loader.Calls()))
		}
		// Kept in L1: served again without DynamoDB or the loader.
		if got, err := m.GetMany(ctx, fresh, loader.load); err != nil || !maps.Equal(got, want) || len(loader.Calls()) != 1 {
			t.Fatalf("second GetMany with DynamoDB down = %v, %v (loader calls %d)", got, err, len(loader.Calls()))
		}
	})
}

func TestGetManyCloseEndsTheLoad(t *testing.T) {
	n := manyNode(t, nil)
	ctx := testContext(t)
	entered := make(chan struct{})
	res := goGetMany(ctx, n, []string{"z1", "z2"}, func(ctx context.Context, _ []string) (map[string]string, error) {
		close(entered)
		<-ctx.Done() // only Close ends this load
		return nil, ctx.Err()
	})
	awaitRecv(t, entered, "the batch loader")
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	awaitRecv(t, closed, "Close, which waits for the load")
	r := awaitRecv(t, res, "GetMany")
	var be *tiered.BatchError
	if len(r.m) != 0 || !errors.As(r.err, &be) || len(be.Errors) != 2 || !errors.Is(be.Errors["z1"], tiered.ErrClosed) || !errors.Is(be.Errors["z2"], tiered.ErrClosed) {
		t.Fatalf("GetMany cut short by Close = %v, %v; want ErrClosed for both keys", r.m, r.err)
	}
	if m, err := n.GetMany(ctx, []string{"z1"}, (&manyLoader{}).load); m != nil || !errors.Is(err, tiered.ErrClosed) {
		t.Fatalf("GetMany after Close = %v, %v; want ErrClosed", m, err)
	}
}

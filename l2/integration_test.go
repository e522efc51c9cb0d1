package l2_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/internal/ddbfault"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
)

// clock is a settable offset from the real time, so tests can move a
// Table's "now" without waiting.
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

type env struct {
	tbl   *l2.Table
	raw   *dynamodb.Client // no faults, no settings of ours: for direct writes
	inj   *ddbfault.Injector
	clock *clock
	name  string
	opts  l2.Options
}

// newEnv creates a fresh table on DynamoDB Local and a Table on it whose
// client goes through a fault injector.
func newEnv(t *testing.T, tweak func(*l2.Options)) *env {
	t.Helper()
	cfg := dynamolocal.AWSConfig(dynamolocal.ForTest(t).Endpoint())
	e := &env{inj: ddbfault.New(), clock: &clock{}, name: dynamolocal.TableName(t)}
	e.raw = dynamodb.NewFromConfig(cfg)
	e.opts = l2.Options{
		Client:    l2.NewClient(cfg, e.inj.Options),
		Table:     e.name,
		Namespace: "ns",
		Now:       e.clock.Now,
		// DynamoDB Local on a busy 2-core machine can take more than the
		// production default for its first calls.
		CallTimeout: 5 * time.Second,
	}
	if tweak != nil {
		tweak(&e.opts)
	}
	var err error
	if e.tbl, err = l2.New(e.opts); err != nil {
		t.Fatal(err)
	}
	if err := e.tbl.EnsureTable(ctx(t)); err != nil {
		t.Fatalf("EnsureTable: %v", err)
	}
	return e
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// putRaw writes an item directly with the SDK, bypassing l2.
func (e *env) putRaw(t *testing.T, item map[string]types.AttributeValue) {
	t.Helper()
	if _, err := e.raw.PutItem(ctx(t), &dynamodb.PutItemInput{TableName: aws.String(e.name), Item: item}); err != nil {
		t.Fatalf("PutItem: %v", err)
	}
}

func (e *env) getRaw(t *testing.T, pk string) map[string]types.AttributeValue {
	t.Helper()
	out, err := e.raw.GetItem(ctx(t), &dynamodb.GetItemInput{
		TableName: aws.String(e.name), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}},
	})
	if err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	return out.Item
}

func S(v string) *types.AttributeValueMemberS { return &types.AttributeValueMemberS{Value: v} }
func N(v int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}
func B(v string) *types.AttributeValueMemberB { return &types.AttributeValueMemberB{Value: []byte(v)} }

func mustGet(t *testing.T, tbl *l2.Table, key string) l2.Item {
	t.Helper()
	it, err := tbl.Get(ctx(t), key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	return it
}

func wantNotFound(t *testing.T, tbl *l2.Table, key, why string) {
	t.Helper()
	if it, err := tbl.Get(ctx(t), key); !errors.Is(err, l2.ErrNotFound) {
		t.Fatalf("%s: Get = %+v, %v; want ErrNotFound", why, it, err)
	}
}

func TestPutGetDeleteVersions(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	wantNotFound(t, e.tbl, "k", "absent")

	v1, err := e.tbl.Put(c, "k", []byte("one"), time.Minute)
	if err != nil || v1 != 1 {
		t.Fatalf("Put = %d, %v; want version 1", v1, err)
	}
	it := mustGet(t, e.tbl, "k")
	if it.Key != "k" || string(it.Value) != "one" || it.Version != 1 || it.NotFound {
		t.Fatalf("Get = %+v", it)
	}
	if d := time.Until(it.ExpiresAt); d < 59*time.Second || d > 62*time.Second {
		t.Errorf("ExpiresAt in %v, want about 1m", d)
	}
	if raw := e.getRaw(t, "ns#k"); raw["v"] == nil || raw["ver"] == nil || raw["exp"] == nil {
		t.Errorf("raw item lacks the format's attributes: %v", raw)
	}

	if err := e.tbl.Delete(c, "k"); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, e.tbl, "k", "after Delete")
	raw := e.getRaw(t, "ns#k")
	if _, hasV := raw["v"]; hasV || raw["tomb"] == nil || raw["ver"].(*types.AttributeValueMemberN).Value != "2" {
		t.Fatalf("tombstone = %v, want tomb, ver 2, no v", raw)
	}
	if exp, _ := strconv.ParseInt(raw["exp"].(*types.AttributeValueMemberN).Value, 10, 64); time.Until(time.Unix(exp, 0)) < 59*time.Minute {
		t.Errorf("tombstone expires in %v, want about TombstoneTTL (1h)", time.Until(time.Unix(exp, 0)))
	}

	// Versions keep growing across the delete.
	v3, err := e.tbl.Put(c, "k", []byte("three"), time.Minute)
	if err != nil || v3 != 3 {
		t.Fatalf("Put after Delete = %d, %v; want version 3", v3, err)
	}
	// Negative entry, then an empty value.
	v4, err := e.tbl.PutNotFound(c, "k", time.Minute)
	if err != nil || v4 != 4 {
		t.Fatalf("PutNotFound = %d, %v", v4, err)
	}
	if it := mustGet(t, e.tbl, "k"); !it.NotFound || it.Value != nil || it.Version != 4 {
		t.Fatalf("negative entry = %+v", it)
	}
	if _, err := e.tbl.Put(c, "k", nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	if it := mustGet(t, e.tbl, "k"); it.NotFound || it.Value == nil || len(it.Value) != 0 || it.Version != 5 {
		t.Fatalf("empty value = %+v, want non-nil empty Value, version 5", it)
	}
	// Namespaces do not see each other.
	other, err := l2.New(l2.Options{Client: e.opts.Client, Table: e.name, Namespace: "other", CallTimeout: e.opts.CallTimeout})
	if err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, other, "k", "other namespace")
}

func TestExpiryFilter(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	// An item whose exp passed: DynamoDB has not swept it (or has: either
	// way it must not be returned).
	past := time.Now().Add(-time.Hour).Unix()
	e.putRaw(t, map[string]types.AttributeValue{"pk": S("ns#old"), "v": B("stale"), "ver": N(3), "exp": N(past)})
	wantNotFound(t, e.tbl, "old", "exp in the past")
	// Get hands back the expired entry with ErrNotFound, marked, for
	// stale-if-error; the version too, for a fill's IfVersion.
	if it, err := e.tbl.Get(c, "old"); !errors.Is(err, l2.ErrNotFound) || !it.Expired || string(it.Value) != "stale" || it.Version != 3 {
		t.Fatalf("Get of an expired item = %+v, %v; want Expired, value stale, version 3 with ErrNotFound", it, err)
	}

	// The filter is ours, not the sweeper's: an item that is live by the
	// real clock is absent for a Table whose clock is past its exp.
	if _, err := e.tbl.Put(c, "k", []byte("v"), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	mustGet(t, e.tbl, "k")
	e.clock.Advance(31 * time.Second)
	wantNotFound(t, e.tbl, "k", "clock past exp")
	if m, err := e.tbl.BatchGet(c, []string{"k", "old"}); err != nil || len(m) != 0 {
		t.Fatalf("BatchGet of expired keys = %v, %v; want empty", m, err)
	}
	if raw := e.getRaw(t, "ns#k"); raw["v"] == nil {
		t.Fatal("the item itself is still in the table; the filter must be read-side")
	}
	// An expired item is vacant: a Fill lands on it, with the next version.
	ver, err := e.tbl.Fill(c, "k", []byte("fresh"), false, time.Minute, "")
	if err != nil || ver != 2 {
		t.Fatalf("Fill over expired = %d, %v; want version 2", ver, err)
	}
	if it := mustGet(t, e.tbl, "k"); string(it.Value) != "fresh" {
		t.Fatalf("Get after Fill = %+v", it)
	}
}

func TestFillNeverOverwritesNewer(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	ver, err := e.tbl.Fill(c, "k", []byte("loaded"), false, time.Minute, "")
	if err != nil || ver != 1 {
		t.Fatalf("Fill on absent = %d, %v", ver, err)
	}
	// A second fill (another node's load) does not replace the first.
	_, err = e.tbl.Fill(c, "k", []byte("loaded-again"), false, time.Minute, "")
	var ce *l2.ConflictError
	if !errors.Is(err, l2.ErrConflict) || errors.Is(err, l2.ErrLeaseLost) || !errors.As(err, &ce) || ce.Current == nil {
		t.Fatalf("Fill over a live fill = %v, want *ConflictError with Current", err)
	}
	if string(ce.Current.Value) != "loaded" || ce.Current.Version != 1 || ce.Current.Key != "k" {
		t.Errorf("Current = %+v", ce.Current)
	}
	// A user's Put is newer than any fill: a fill cannot overwrite it.
	if _, err := e.tbl.Put(c, "k", []byte("written"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := e.tbl.Fill(c, "k", []byte("old-load"), false, time.Minute, ""); !errors.Is(err, l2.ErrConflict) {
		t.Fatalf("Fill over a Put = %v, want ErrConflict", err)
	}
	if _, err := e.tbl.Fill(c, "k", nil, true, time.Minute, ""); !errors.Is(err, l2.ErrConflict) {
		t.Fatalf("negative Fill over a Put = %v, want ErrConflict", err)
	}
	if it := mustGet(t, e.tbl, "k"); string(it.Value) != "written" || it.Version != 2 {
		t.Fatalf("after refused fills: %+v, want the Put's value at version 2", it)
	}
	// A negative fill on an absent key.
	if ver, err := e.tbl.Fill(c, "nf", []byte("ignored"), true, time.Minute, ""); err != nil || ver != 1 {
		t.Fatalf("negative Fill = %d, %v", ver, err)
	}
	if it := mustGet(t, e.tbl, "nf"); !it.NotFound || it.Value != nil {
		t.Fatalf("negative fill read back as %+v", it)
	}
	// Without a lease a fill may land on a tombstone (documented).
	if err := e.tbl.Delete(c, "k"); err != nil {
		t.Fatal(err)
	}
	if ver, err := e.tbl.Fill(c, "k", []byte("refill"), false, time.Minute, ""); err != nil || ver != 4 {
		t.Fatalf("Fill over a tombstone = %d, %v; want version 4", ver, err)
	}
	if s := e.tbl.Stats(); s.ConditionFailures != 3 || s.Errors != 0 {
		t.Errorf("Stats = %+v, want 3 condition failures, 0 errors", s)
	}
}

func TestCorruptItems(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	future := N(time.Now().Add(time.Hour).Unix())
	cases := []struct {
		key, attr string
		item      map[string]types.AttributeValue
	}{
		{"v-string", "v", map[string]types.AttributeValue{"v": S("not bytes"), "ver": N(1)}},
		{"v-list", "v", map[string]types.AttributeValue{"v": &types.AttributeValueMemberL{}, "ver": N(1)}},
		{"no-ver", "ver", map[string]types.AttributeValue{"v": B("x")}},
		{"ver-string", "ver", map[string]types.AttributeValue{"v": B("x"), "ver": S("1")}},
		{"ver-huge", "ver", map[string]types.AttributeValue{"v": B("x"), "ver": &types.AttributeValueMemberN{Value: "1e30"}}},
		{"exp-string", "exp", map[string]types.AttributeValue{"v": B("x"), "ver": N(1), "exp": S("tomorrow")}},
		{"neg-string", "neg", map[string]types.AttributeValue{"neg": S("yes"), "ver": N(1), "exp": future}},
		{"v-and-neg", "neg", map[string]types.AttributeValue{"v": B("x"), "neg": &types.AttributeValueMemberBOOL{Value: true}, "ver": N(1)}},
		{"lease-no-lexp", "lexp", map[string]types.AttributeValue{"lease": S("o")}},
	}
	for _, cs := range cases {
		cs.item["pk"] = S("ns#" + cs.key)
		e.putRaw(t, cs.item)
	}
	for i, cs := range cases {
		_, err := e.tbl.Get(c, cs.key)
		var ce *l2.CorruptItemError
		if !errors.Is(err, l2.ErrCorruptItem) || !errors.As(err, &ce) || ce.Attr != cs.attr {
			t.Errorf("%s: Get = %v, want *CorruptItemError on %s", cs.key, err, cs.attr)
		}
		if got := e.tbl.Stats().CorruptItems; got != int64(i+1) {
			t.Errorf("%s: CorruptItems = %d, want %d", cs.key, got, i+1)
		}
	}
	// BatchGet skips (and counts) corrupt items, returns the good ones.
	if _, err := e.tbl.Put(c, "good", []byte("g"), time.Minute); err != nil {
		t.Fatal(err)
	}
	keys := []string{"good"}
	for _, cs := range cases {
		keys = append(keys, cs.key)
	}
	before := e.tbl.Stats().CorruptItems
	m, err := e.tbl.BatchGet(c, keys)
	if err != nil || len(m) != 1 || string(m["good"].Value) != "g" {
		t.Fatalf("BatchGet with corrupt items = %v, %v", m, err)
	}
	if got := e.tbl.Stats().CorruptItems - before; got != int64(len(cases)) {
		t.Errorf("BatchGet counted %d corrupt items, want %d", got, len(cases))
	}
	// A user's Put repairs a corrupt item.
	if _, err := e.tbl.Put(c, "v-string", []byte("ok"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if it := mustGet(t, e.tbl, "v-string"); string(it.Value) != "ok" {
		t.Fatalf("after repair: %+v", it)
	}
}

func TestSizeLimitsAgainstDynamoDB(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	// The longest key and the largest value for it both fit in a real item:
	// our overhead bound is not too small.
	key := string(make([]byte, 0)) + fmt.Sprintf("%0*d", l2.MaxPartitionKeyBytes-len("ns#"), 7)
	if pk, err := e.tbl.EncodeKey(key); err != nil || len(pk) != l2.MaxPartitionKeyBytes {
		t.Fatalf("EncodeKey = %d bytes, %v", len(pk), err)
	}
	val := make([]byte, e.tbl.MaxValueBytes(key))
	if _, err := e.tbl.Put(c, key, val, time.Minute); err != nil {
		t.Fatalf("Put of the largest value with the longest key: %v", err)
	}
	if res, err := e.tbl.AcquireLeaseAt(c, "big", 0, "owner", time.Second); err != nil || !res.Acquired {
		t.Fatalf("AcquireLeaseAt: %+v, %v", res, err)
	}
	big := make([]byte, e.tbl.MaxValueBytes("big"))
	if _, err := e.tbl.Fill(c, "big", big, false, time.Minute, "owner", l2.IfVersion(0)); err != nil {
		t.Fatalf("Fill of the largest value: %v", err)
	}
	if it := mustGet(t, e.tbl, "big"); len(it.Value) != len(big) {
		t.Fatalf("read back %d bytes, want %d", len(it.Value), len(big))
	}
	// One byte more is refused before DynamoDB is asked.
	calls := e.tbl.Stats().Calls
	_, err := e.tbl.Put(c, key, append(val, 0), time.Minute)
	if !errors.Is(err, l2.ErrValueTooLarge) || e.tbl.Stats().Calls != calls {
		t.Fatalf("Put of one byte more = %v (calls %d -> %d)", err, calls, e.tbl.Stats().Calls)
	}
	// A key with multibyte characters is measured in bytes.
	wide := ""
	for len(wide)+len("é") <= l2.MaxPartitionKeyBytes-len("ns#") {
		wide += "é"
	}
	if _, err := e.tbl.Put(c, wide, []byte("x"), time.Minute); err != nil {
		t.Fatalf("Put with a %d-byte UTF-8 key: %v", len(wide), err)
	}
	if _, err := e.tbl.Put(c, wide+"éé", []byte("x"), time.Minute); !errors.Is(err, l2.ErrKeyTooLong) {
		t.Fatalf("Put with a too long UTF-8 key = %v", err)
	}
}

func TestBatchGetChunksAndDedups(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	const n = 250
	var keys []string
	for i := range n {
		k := "k" + strconv.Itoa(i)
		keys = append(keys, k)
		if i%5 == 0 {
			continue // absent
		}
		if i%7 == 0 {
			if _, err := e.tbl.PutNotFound(c, k, time.Minute); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, err := e.tbl.Put(c, k, []byte("v"+strconv.Itoa(i)), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	keys = append(keys, keys[:30]...) // duplicates
	before := e.inj.Calls("BatchGetItem")
	m, err := e.tbl.BatchGet(c, keys)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.inj.Calls("BatchGetItem") - before; got != 3 {
		t.Errorf("BatchGetItem calls = %d, want 3 for 250 distinct keys", got)
	}
	for i := range n {
		k := "k" + strconv.Itoa(i)
		it, ok := m[k]
		switch {
		case i%5 == 0:
			if ok {
				t.Errorf("%s absent, got %+v", k, it)
			}
		case i%7 == 0:
			if !ok || !it.NotFound {
				t.Errorf("%s negative, got %+v, %v", k, it, ok)
			}
		default:
			if !ok || string(it.Value) != "v"+strconv.Itoa(i) || it.Key != k {
				t.Errorf("%s = %+v, %v", k, it, ok)
			}
		}
	}
	if m, err := e.tbl.BatchGet(c, nil); err != nil || len(m) != 0 {
		t.Errorf("BatchGet(nil) = %v, %v", m, err)
	}
}

func TestBatchGetRetriesUnprocessed(t *testing.T) {
	e := newEnv(t, func(o *l2.Options) { o.BatchBackoff = time.Millisecond; o.BatchMaxWait = 5 * time.Millisecond })
	c := ctx(t)
	var keys []string
	for i := range 150 {
		k := "k" + strconv.Itoa(i)
		keys = append(keys, k)
		if _, err := e.tbl.Put(c, k, []byte(k), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// Two calls come back with 40 keys unprocessed each: retried, all read.
	e.inj.Add(ddbfault.Rule{Op: "BatchGetItem", Unprocessed: 40, Times: 2})
	m, err := e.tbl.BatchGet(c, keys)
	if err != nil || len(m) != 150 {
		t.Fatalf("BatchGet with UnprocessedKeys = %d items, %v", len(m), err)
	}
	if got := e.tbl.Stats().UnprocessedRetries; got != 2 {
		t.Errorf("UnprocessedRetries = %d, want 2", got)
	}

	// Keys that stay unprocessed: a *PartialError naming exactly them, with
	// everything else read.
	remove := e.inj.Add(ddbfault.Rule{Op: "BatchGetItem", Unprocessed: 3})
	m, err = e.tbl.BatchGet(c, keys)
	remove()
	var pe *l2.PartialError
	if !errors.Is(err, l2.ErrPartial) || !errors.As(err, &pe) {
		t.Fatalf("BatchGet with persistent UnprocessedKeys = %v, want *PartialError", err)
	}
	// The first chunk (keys 0..99) gives up on its last 3 keys; the second
	// chunk is never asked.
	if len(pe.Keys) != 3+50 || len(m) != 97 {
		t.Fatalf("PartialError lists %d keys and %d were read; want 53 and 97", len(pe.Keys), len(m))
	}
	for _, k := range pe.Keys {
		if _, read := m[k]; read {
			t.Errorf("key both read and listed as unread")
		}
	}
	if got := e.tbl.Stats().UnprocessedRetries; got != 2+l2.DefaultBatchRetries {
		t.Errorf("UnprocessedRetries = %d, want %d", got, 2+l2.DefaultBatchRetries)
	}

	// A throttled batch: the SDK error stays reachable.
	e.inj.Add(ddbfault.Rule{Op: "BatchGetItem", Throttle: true})
	_, err = e.tbl.BatchGet(c, keys[:10])
	var pte *types.ProvisionedThroughputExceededException
	if !errors.As(err, &pe) || !errors.Is(err, l2.ErrThrottled) || !errors.As(err, &pte) || len(pe.Keys) != 10 {
		t.Fatalf("throttled BatchGet = %v", err)
	}
}

func TestThrottledAndSlowCalls(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	if _, err := e.tbl.Put(c, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	// One throttled attempt: the client's single retry hides it.
	e.inj.Add(ddbfault.Rule{Op: "GetItem", Throttle: true, Times: 1})
	if _, err := e.tbl.Get(c, "k"); err != nil {
		t.Fatalf("Get after one throttled attempt: %v", err)
	}
	// Throttled for good: fails fast, typed, counted.
	e.inj.Add(ddbfault.Rule{Op: "GetItem", Throttle: true})
	before := e.inj.Attempts("GetItem")
	_, err := e.tbl.Get(c, "k")
	var pte *types.ProvisionedThroughputExceededException
	if !errors.Is(err, l2.ErrThrottled) || !errors.As(err, &pte) {
		t.Fatalf("throttled Get = %v, want ErrThrottled wrapping the SDK error", err)
	}
	if got := e.inj.Attempts("GetItem") - before; got != l2.ClientMaxAttempts {
		t.Errorf("attempts = %d, want %d", got, l2.ClientMaxAttempts)
	}
	// (The SDK's defaults made 3 attempts with the shared retry quota and took
	// 2.5 s here; the attempt count above is what NewClient controls.)
	s := e.tbl.Stats()
	if s.Throttles != 1 || s.Errors != 1 {
		t.Errorf("Stats = %+v, want 1 throttle, 1 error", s)
	}
	e.inj.Reset()

	// A hung DynamoDB: the call ends at DefaultCallTimeout, marked as ours.
	// Only this part runs on the production default: the calls above must
	// not fail because a loaded machine is slower than it.
	defOpts := e.opts
	defOpts.CallTimeout = 0
	def, err := l2.New(defOpts)
	if err != nil {
		t.Fatal(err)
	}
	e.inj.Add(ddbfault.Rule{Op: "GetItem", Latency: 10 * time.Second})
	if _, err = def.Get(c, "k"); !errors.Is(err, l2.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow Get = %v, want ErrTimeout (and DeadlineExceeded)", err)
	}
	// A sooner caller deadline wins, and is not blamed on DynamoDB.
	short, cancel := context.WithTimeout(c, 50*time.Millisecond)
	defer cancel()
	if _, err := def.Get(short, "k"); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, l2.ErrTimeout) {
		t.Fatalf("Get with a 50ms deadline = %v, want DeadlineExceeded without ErrTimeout", err)
	}
	e.inj.Reset()

	// Other errors pass through typed, not as throttles.
	boom := errors.New("boom")
	e.inj.Add(ddbfault.Rule{Op: "UpdateItem", Err: boom, Times: 1})
	if _, err := e.tbl.Put(c, "k", []byte("v"), time.Minute); !errors.Is(err, boom) || errors.Is(err, l2.ErrThrottled) {
		t.Fatalf("Put with an injected error = %v", err)
	}
}

func TestRefreshOnlyOverTheVersionSeen(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	// Never stored: a refresh with version 0 lands only while the key has no
	// version at all.
	ver, err := e.tbl.Refresh(c, "k", []byte("r1"), false, time.Minute, 0)
	if err != nil || ver != 1 {
		t.Fatalf("Refresh of an absent key = %d, %v; want version 1", ver, err)
	}
	if _, err := e.tbl.Refresh(c, "k", []byte("again"), false, time.Minute, 0); !errors.Is(err, l2.ErrConflict) {
		t.Fatalf("second Refresh at version 0 = %v; want ErrConflict", err)
	}
	// Over a live entry at the version seen: it replaces it (Fill would not).
	if ver, err = e.tbl.Refresh(c, "k", []byte("r2"), false, time.Minute, 1); err != nil || ver != 2 {
		t.Fatalf("Refresh at the current version = %d, %v; want 2", ver, err)
	}
	// A write moved the version: the reload may be older; refused, and the
	// conflict carries the live entry.
	if _, err := e.tbl.Put(c, "k", []byte("written"), time.Minute); err != nil {
		t.Fatal(err)
	}
	_, err = e.tbl.Refresh(c, "k", []byte("late"), false, time.Minute, 2)
	var ce *l2.ConflictError
	if !errors.As(err, &ce) || ce.Current == nil || string(ce.Current.Value) != "written" {
		t.Fatalf("Refresh after a Put = %v; want *ConflictError with the written entry", err)
	}
	// A delete too.
	if err := e.tbl.Delete(c, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.tbl.Refresh(c, "k", []byte("late"), false, time.Minute, 3); !errors.Is(err, l2.ErrConflict) {
		t.Fatalf("Refresh after a Delete = %v; want ErrConflict", err)
	}
	wantNotFound(t, e.tbl, "k", "deleted, refresh refused")
}

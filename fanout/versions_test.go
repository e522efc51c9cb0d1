package fanout_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/fanout"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

func replaceOnChange(o *tiered.Options[string], _ *fanout.PodOptions) { o.ReplaceOnChange = true }

// drained returns the keys p invalidated so far (without waiting).
func (p *pod) drained() map[string]bool {
	got := map[string]bool{}
	for {
		select {
		case k := <-p.events:
			got[k] = true
		default:
			return got
		}
	}
}

// isL1Hit reads key on p and reports whether L1 answered, and the value.
func (p *pod) isL1Hit(t *testing.T, key string) (string, bool) {
	t.Helper()
	hits := p.Stats().L1.Hits
	v, err := p.Get(testContext(t), key)
	if err != nil {
		t.Fatalf("Get %q: %v", key, err)
	}
	return v, p.Stats().L1.Hits == hits+1
}

// TestVersionsKeepOwnWritesOnly: the table's stream has NEW_IMAGE, so each
// batch carries each key's version and write proof. The writing pod keeps
// its own fresh entry (no eviction, still an L1 hit after the record went
// by); the other pod evicts. Then writers that set the same version are
// never taken for the pod: a foreign writer mark over the very same value,
// and a changed value under the pod's own mark, both evict it.
func TestVersionsKeepOwnWritesOnly(t *testing.T) {
	cfg := dynamolocal.AWSConfig(dynamolocal.ForTest(t).Endpoint())
	table := dynamolocal.TableName(t)
	ns := startNATS(t)
	a := newPod(t, cfg, table, dial(t, ns), replaceOnChange)
	b := newPod(t, cfg, table, dial(t, ns), replaceOnChange)
	newBridge(t, cfg, table, "bridge-1", dial(t, ns), nil)
	waitFor(t, "both pods trusted", func() bool { return trusted(a)() && trusted(b)() })
	ctx := testContext(t)

	// marker makes b write a key and waits until a has dropped it: every
	// message before it has been applied on a.
	n := 0
	marker := func() {
		n++
		key := "marker" + itoa(n)
		if err := b.Set(ctx, key, "m"); err != nil {
			t.Fatal(err)
		}
		a.awaitEvent(t, key)
	}

	keys0 := a.src.PodStats().Keys
	if err := a.Set(ctx, "mine", "v1"); err != nil {
		t.Fatal(err)
	}
	b.awaitEvent(t, "mine") // b evicts a's write
	marker()
	if a.drained()["mine"] {
		t.Fatalf("a evicted its own write")
	}
	if v, hit := a.isL1Hit(t, "mine"); !hit || v != "v1" {
		t.Fatalf("a's own write: %q, L1 hit %v; want v1 from L1", v, hit)
	}
	if a.src.PodStats().Keys < keys0+2 {
		t.Fatalf("a's pod applied %d keys, want its own write's and the marker's", a.src.PodStats().Keys-keys0)
	}

	ddb := l2.NewClient(cfg)
	item := func(key string) map[string]types.AttributeValue {
		out, err := ddb.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true),
			Key: map[string]types.AttributeValue{l2.PartitionKeyAttr: &types.AttributeValueMemberS{Value: "#" + key}}})
		if err != nil || out.Item == nil {
			t.Fatalf("GetItem %q: %v (item %v)", key, err, out.Item)
		}
		return out.Item
	}
	put := func(it map[string]types.AttributeValue) {
		if _, err := ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: it}); err != nil {
			t.Fatal(err)
		}
	}

	// A foreign writer stores the very same value at the same version
	// under its own mark: the proof differs, a evicts.
	it := item("mine")
	it[l2.WriterAttr] = &types.AttributeValueMemberS{Value: "someone-else"}
	put(it)
	a.awaitEvent(t, "mine")
	if _, hit := a.isL1Hit(t, "mine"); hit {
		t.Fatalf("a kept its entry after a foreign write at the same version")
	}

	// a writes again (its entry is fresh), then someone changes the value
	// under a's own mark and version: the value hash differs, a evicts.
	if err := a.Set(ctx, "mine", "v2"); err != nil {
		t.Fatal(err)
	}
	if err := a.Set(ctx, "other", "v3"); err != nil {
		t.Fatal(err)
	}
	marker()
	a.drained()
	if _, hit := a.isL1Hit(t, "mine"); !hit {
		t.Fatalf("a lost its second own write")
	}
	it = item("mine")
	it[l2.ValueAttr] = item("other")[l2.ValueAttr]
	put(it)
	a.awaitEvent(t, "mine")
	if v, hit := a.isL1Hit(t, "mine"); hit || v != "v3" {
		t.Fatalf("after a changed value under a's mark and version: %q, L1 hit %v; want v3 read from L2", v, hit)
	}
}

// TestKeyHashesEvict: with key hashes, a write on one pod still evicts the
// other's copy (each pod maps hashes to its keys); a pod not configured for
// hashes counts them as unreadable and flushes rather than ignore them.
func TestKeyHashesEvict(t *testing.T) {
	cfg := dynamolocal.AWSConfig(dynamolocal.ForTest(t).Endpoint())
	table := dynamolocal.TableName(t)
	ns := startNATS(t)
	hashes := func(_ *tiered.Options[string], o *fanout.PodOptions) { o.KeyHashes = true }
	a := newPod(t, cfg, table, dial(t, ns), hashes)
	b := newPod(t, cfg, table, dial(t, ns), hashes)
	c := newPod(t, cfg, table, dial(t, ns))
	br := newBridge(t, cfg, table, "bridge-1", dial(t, ns), nil, func(o *fanout.BridgeOptions) { o.KeyHashes = true })
	waitFor(t, "both pods trusted", func() bool { return trusted(a)() && trusted(b)() })
	for i := range 20 {
		if _, flushed := crossWrite(t, a, b, "h"+itoa(i), "v"); flushed {
			t.Logf("write %d dropped by a flush", i)
		}
	}
	if br.Stats().Keys < 20 {
		t.Fatalf("bridge published %d keys", br.Stats().Keys)
	}
	if st := c.src.PodStats(); st.Undecodable == 0 || st.Flushes == 0 || trusted(c)() {
		t.Fatalf("a pod without KeyHashes accepted hashes: %+v", st)
	}
}

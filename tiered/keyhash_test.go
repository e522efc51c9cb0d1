package tiered_test

import (
	"context"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

// hashingSource is a scriptedSource that names changes by key hash.
type hashingSource struct{ scriptedSource }

func (*hashingSource) SendsKeyHashes() bool { return true }

// TestChangesByKeyHash: with a HashingSource, a change named by the hash of
// a key's partition key value drops that key's entry, fences a fill of it
// that is in flight (the value it loaded never lands in L1), and leaves
// other keys alone.
func TestChangesByKeyHash(t *testing.T) {
	src := &hashingSource{}
	n := newNode(t, dynamolocal.TableName(t), func(o *tiered.Options[string]) {
		o.Invalidation = src
		o.Namespace = "ns"
	})
	ctx := testContext(t)
	src.cfg.Sink.TrustUntil(src.cfg.Now().Add(time.Hour))
	changed := func(key string) {
		src.cfg.Sink.Changed(invalidation.Change{KeyHash: l2.KeyHash("ns", key)})
	}
	l1Hit := func(key string) bool {
		t.Helper()
		hits := n.Stats().L1.Hits
		if _, err := n.Get(ctx, key); err != nil {
			t.Fatalf("Get %q: %v", key, err)
		}
		return n.Stats().L1.Hits == hits+1
	}
	for _, k := range []string{"a", "b"} {
		if _, err := n.GetOrLoad(ctx, k, constLoader("v")); err != nil {
			t.Fatal(err)
		}
	}
	changed("a")
	changed("never-held")
	if l1Hit("a") {
		t.Fatalf("a survived a change named by its hash")
	}
	if !l1Hit("b") {
		t.Fatalf("b was dropped by another key's hash")
	}

	// A fill in flight: its loader runs when the change arrives.
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := n.GetOrLoad(ctx, "c", func(context.Context, string) (string, error) {
			close(started)
			<-release
			return "loaded", nil
		})
		done <- err
	}()
	<-started
	changed("c")
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if l1Hit("c") {
		t.Fatalf("a fill that was in flight when its key's hash changed landed in L1")
	}
	if !l1Hit("c") { // the Get above filled it from L2
		t.Fatalf("c not cached after a fresh read")
	}
}

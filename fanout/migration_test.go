package fanout_test

import (
	"testing"
	"time"

	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
)

// TestStreamViewMigration switches a live table's stream from KEYS_ONLY to
// NEW_IMAGE under a bridge and two pods (which keep their options): the
// bridge's consumer sees the stream disabled and tells the pods to flush and
// distrust; once the new stream is enabled it follows the new ARN from
// LATEST, the pods flush again and trust; from then on batches carry versions
// and proofs, and a pod keeps its own writes. Nothing is restarted or
// reconfigured.
func TestStreamViewMigration(t *testing.T) {
	cfg := dynamolocal.AWSConfig(dynamolocal.ForTest(t).Endpoint())
	table := dynamolocal.TableName(t)
	ns := startNATS(t)
	a := newPod(t, cfg, table, dial(t, ns))
	b := newPod(t, cfg, table, dial(t, ns))
	br := newBridge(t, cfg, table, "bridge-1", dial(t, ns), nil)
	waitFor(t, "both pods trusted", func() bool { return trusted(a)() && trusted(b)() })
	ctx := testContext(t)

	// KEYS_ONLY: a's own write comes back as a bare key, and a evicts it.
	if err := a.Set(ctx, "before", "v"); err != nil {
		t.Fatal(err)
	}
	a.awaitEvent(t, "before")

	client := l2.NewClient(cfg)
	fa, fb := a.src.PodStats().BridgeFlushes, b.src.PodStats().BridgeFlushes
	start := time.Now()
	if err := dynamolocal.SetStream(ctx, client, table, ""); err != nil {
		t.Fatalf("disable the stream: %v", err)
	}
	waitFor(t, "both pods told to flush and distrust", func() bool {
		return !trusted(a)() && !trusted(b)() && a.src.PodStats().BridgeFlushes > fa && b.src.PodStats().BridgeFlushes > fb
	})
	degraded := time.Since(start)
	if err := dynamolocal.SetStream(ctx, client, table, ddbtypes.StreamViewTypeNewImage); err != nil {
		t.Fatalf("enable the stream (NEW_IMAGE): %v", err)
	}
	enabled := time.Now()
	waitFor(t, "both pods trusted on the new stream", func() bool { return trusted(a)() && trusted(b)() })
	t.Logf("disable -> pods flushed and degraded: %v; enable -> trusted again: %v; bridge %+v",
		degraded, time.Since(enabled), br.Stats())

	// NEW_IMAGE: a keeps its own write; b evicts it.
	if err := a.Set(ctx, "after", "v2"); err != nil {
		t.Fatal(err)
	}
	b.awaitEvent(t, "after")
	if err := b.Set(ctx, "marker", "m"); err != nil {
		t.Fatal(err)
	}
	a.awaitEvent(t, "marker")
	if a.drained()["after"] {
		t.Fatalf("a evicted its own write after the switch to NEW_IMAGE")
	}
	if v, hit := a.isL1Hit(t, "after"); !hit || v != "v2" {
		t.Fatalf("a's own write after the switch: %q, L1 hit %v", v, hit)
	}
}

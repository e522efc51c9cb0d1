package fanout_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/fanout"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
)

// TestLeaseItemDeletedRestartsAboveOldEpoch: the lease item is deleted under
// a live bridge and pod (an operator, a table restore). The bridge loses its
// lease, takes the item again, and its new epoch is above the old one, so the
// pod (which ignores older epochs) flushes, follows it and trusts again.
// Restarting the epoch at 1 would leave the pod ignoring every message.
func TestLeaseItemDeletedRestartsAboveOldEpoch(t *testing.T) {
	cfg := dynamolocal.AWSConfig(dynamolocal.ForTest(t).Endpoint())
	table := dynamolocal.TableName(t)
	ns := startNATS(t)
	p := newPod(t, cfg, table, dial(t, ns))
	q := newPod(t, cfg, table, dial(t, ns))
	br := newBridge(t, cfg, table, "bridge-1", dial(t, ns), nil)
	waitFor(t, "the bridge to lead", func() bool { return br.Stats().Leader })
	waitFor(t, "the pods trusted", func() bool { return trusted(p)() && trusted(q)() })
	old := br.Stats()

	if _, err := dynamodb.NewFromConfig(cfg).DeleteItem(testContext(t), &dynamodb.DeleteItemInput{
		TableName: &table,
		Key:       map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: fanout.DefaultLeaseKey}},
	}); err != nil {
		t.Fatalf("delete the lease item: %v", err)
	}
	waitFor(t, "the bridge to lead on a new epoch", func() bool {
		s := br.Stats()
		return s.Leader && s.Epoch != old.Epoch
	})
	s := br.Stats()
	if s.Epoch <= old.Epoch {
		t.Fatalf("epoch after the lease item was deleted: %d, old %d: want higher", s.Epoch, old.Epoch)
	}
	waitFor(t, "the pod on the new epoch, trusted", func() bool {
		return p.src.PodStats().Epoch == s.Epoch && trusted(p)()
	})
	if ps := p.src.PodStats(); ps.EpochChanges < 1 {
		t.Fatalf("the pod did not flush on the epoch change: %+v", ps)
	}
	crossWrite(t, p, q, "after", "v1") // invalidations flow again on the new epoch
	t.Logf("lease item deleted: epoch %d -> %d, %d takeovers, %d step-downs", old.Epoch, s.Epoch, s.Takeovers, s.StepDowns)
}

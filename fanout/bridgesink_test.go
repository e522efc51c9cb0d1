package fanout

import (
	"testing"

	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/l2"
)

// The bridge publishes the keys of cache entries only: not its own lease's
// renewals, nor the caches' fill leases (lease items), which change no entry.
func TestBridgeSinkSkipsLeaseItems(t *testing.T) {
	tbl, err := l2.New(l2.Options{Client: nopAPI{}, Table: "t-x", Namespace: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	s := &bridgeSink{leaseKey: "fanout!leader"}
	for _, pk := range []string{"fanout!leader", tbl.LeasePartitionKey("k"), "ns#k"} {
		s.Changed(invalidation.Change{PartitionKey: pk})
	}
	if len(s.cur.keys) != 1 || s.cur.keys[0] != "ns#k" {
		t.Fatalf("published %q, want only ns#k", s.cur.keys)
	}
}

// nopAPI is an l2.API that is never called: the test only needs a Table's
// key encoding.
type nopAPI struct{ l2.API }

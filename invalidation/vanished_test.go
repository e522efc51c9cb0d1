package invalidation_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/invalidation"
)

// A shard that vanishes (trimmed away, say) before it was read to its end is
// given up with Flush(ErrPositionLost); reading goes on with what the stream
// lists, and the consumer becomes healthy and trusted again.
func TestVanishedShardFlushesAndRecovers(t *testing.T) {
	f := newFake(t)
	f.addShard("S", "", false)
	c, sink := start(t, f, nil) // ShardListInterval 200ms: given up after >= 200ms of absence
	f.put("S", "k1")
	sink.awaitKeys(t, wait, "k1")

	// S vanishes with an unread record; its child N holds records already.
	f.set(func(f *fakeStreams) { f.gate = make(chan struct{}) })
	f.put("S", "unread")
	f.addShard("N", "S", false)
	f.put("N", "n0")
	f.vanish("S")
	t0 := time.Now()
	f.set(func(f *fakeStreams) { close(f.gate); f.gate = nil })

	evs := sink.await(t, "Flush(ErrPositionLost), then trusted again", wait, func(evs []ev) bool {
		i := indexOf(evs, evFlush, invalidation.ErrPositionLost, 0)
		return i >= 0 && indexOf(evs, evTrusted, nil, i) >= 0
	})
	i := indexOf(evs, evFlush, invalidation.ErrPositionLost, 0)
	t.Logf("flushed %v after the shard vanished: %v", evs[i].at.Sub(t0), evs[i].reason)
	if d := evs[i].at.Sub(t0); d < 200*time.Millisecond {
		t.Errorf("shard given up after %v, before ShardListInterval (200ms) of absence", d)
	}
	if indexOf(evs, evUntrusted, nil, 0) < 0 {
		t.Errorf("want untrusted after the loss: %v", summary(evs))
	}
	j := indexOf(evs, evTrusted, nil, i)
	if evs[j-1].kind != evFlush || !errors.Is(evs[j-1].reason, invalidation.ErrRecovered) {
		t.Errorf("want Flush(ErrRecovered) right before trusted again: %v", summary(evs))
	}
	if k := keyIndex(evs, "n0"); k < 0 || k > j {
		t.Errorf("want the child's backlog (n0) read before trust returns: %v", summary(evs))
	}
	if keyIndex(evs, "unread") >= 0 {
		t.Errorf("a record of the vanished shard was reported: %v", summary(evs))
	}
	if reqs := f.iterRequestsFor("N"); len(reqs) == 0 || reqs[0].Type != "TRIM_HORIZON" {
		t.Errorf("the child must start at TRIM_HORIZON, got %v", reqs)
	}

	f.put("N", "n1")
	evs = sink.awaitKeys(t, wait, "n1")
	if n := count(evs, evFlush); n != 2 {
		t.Errorf("want exactly 2 flushes (lost, recovered): %v", summary(evs))
	}
	st := c.Stats()
	if !st.Healthy || !st.Trusted || st.Shards != 1 || st.ShardsLost != 1 {
		t.Errorf("stats after recovery: %+v", st)
	}
}

// The same with no child listed: the stream's other shards carry on and
// trust returns without one.
func TestVanishedShardWithoutChildren(t *testing.T) {
	f := newFake(t)
	f.addShard("A", "", false)
	f.addShard("B", "", false)
	c, sink := start(t, f, nil)
	f.vanish("A")
	evs := sink.await(t, "Flush(ErrPositionLost), then trusted again", wait, func(evs []ev) bool {
		i := indexOf(evs, evFlush, invalidation.ErrPositionLost, 0)
		return i >= 0 && indexOf(evs, evTrusted, nil, i) >= 0
	})
	t.Logf("events: %v", summary(evs))
	f.put("B", "b1")
	sink.awaitKeys(t, wait, "b1")
	if st := c.Stats(); !st.Healthy || !st.Trusted || st.Shards != 1 || st.ShardsLost != 1 {
		t.Errorf("stats: %+v", st)
	}
}

// ResourceNotFoundException on a shard the stream still lists is transient:
// the reader resumes after its last record, without a flush.
func TestShardNotFoundWhileListedIsRetried(t *testing.T) {
	f := newFake(t)
	f.addShard("S", "", false)
	// Five not-found rounds (each with a DescribeTable, a listing and a
	// backoff) outlast the usual 500ms: staleness is not what this tests.
	c, sink := start(t, f, func(o *invalidation.Options) { o.StaleAfter = 5 * time.Second })
	f.put("S", "k1")
	sink.awaitKeys(t, wait, "k1")
	var seq1 string
	for _, e := range sink.events() {
		if e.kind == evChanged && e.change.PartitionKey == "k1" {
			seq1 = e.change.SequenceNumber
		}
	}
	f.inject("GetRecords", "S", "ResourceNotFoundException", 3)
	f.inject("GetShardIterator", "S", "ResourceNotFoundException", 2)
	f.put("S", "k2")
	evs := sink.awaitKeys(t, wait, "k2")
	if n := count(evs, evFlush); n != 0 {
		t.Errorf("a listed shard must not be given up: %v", summary(evs))
	}
	found := false
	for _, r := range f.iterRequestsFor("S") {
		if r.Type == "AFTER_SEQUENCE_NUMBER" && r.Seq == seq1 {
			found = true
		}
	}
	if !found {
		t.Errorf("want a resume AFTER_SEQUENCE_NUMBER %s, got %v", seq1, f.iterRequestsFor("S"))
	}
	if st := c.Stats(); st.ShardsLost != 0 || !st.Trusted {
		t.Errorf("stats: %+v", st)
	}
}

// A brand-new child that DescribeStream does not list yet (and whose
// iterators are refused meanwhile) is waited for, not given up.
func TestNewShardNotYetListedIsNotDropped(t *testing.T) {
	f := newFake(t)
	f.addShard("P", "", false)
	_, sink := start(t, f, func(o *invalidation.Options) {
		o.ShardListInterval = 3 * time.Second // how long a shard must be missing
		o.StaleAfter = 10 * time.Second
	})
	f.put("P", "p1")
	sink.awaitKeys(t, wait, "p1")
	ch := f.addShard("C", "P", false)
	f.put("C", "c1")
	f.set(func(*fakeStreams) { ch.hidden = true })
	f.closeShard("P")
	// Let the consumer meet ResourceNotFoundException on C a few times.
	deadline := time.Now().Add(wait)
	for len(f.iterRequestsFor("C")) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("C never tried: %v", f.iterRequestsFor("C"))
		}
		time.Sleep(10 * time.Millisecond) // polling the fake, not synchronisation
	}
	f.set(func(*fakeStreams) { ch.hidden = false })
	evs := sink.awaitKeys(t, wait, "c1")
	if n := count(evs, evFlush); n != 0 {
		t.Errorf("a shard not listed yet was given up: %v", summary(evs))
	}
}

// Shards that vanish because the stream was replaced (disabled and enabled
// again, a new view type) are reported as ErrStreamChanged, not as lost
// positions, even when the readers notice before the periodic DescribeTable.
func TestVanishedStreamIsStreamChanged(t *testing.T) {
	f := newFake(t)
	f.addShard("S", "", false)
	c, sink := start(t, f, func(o *invalidation.Options) { o.DescribeInterval = time.Hour })
	f.put("S", "k1")
	sink.awaitKeys(t, wait, "k1")
	f.set(func(f *fakeStreams) {
		f.arn = "arn:aws:dynamodb:us-east-1:000000000000:table/tbl/stream/2"
		f.shards, f.byID = nil, map[string]*fShard{}
	})
	f.addShard("N", "", false)
	evs := sink.await(t, "Flush(ErrStreamChanged), then trusted again", wait, func(evs []ev) bool {
		i := indexOf(evs, evFlush, invalidation.ErrStreamChanged, 0)
		return i >= 0 && indexOf(evs, evTrusted, nil, i) >= 0
	})
	if indexOf(evs, evFlush, invalidation.ErrPositionLost, 0) >= 0 {
		t.Errorf("a replaced stream reported as a lost position: %v", summary(evs))
	}
	f.put("N", "n1")
	sink.awaitKeys(t, wait, "n1")
	if st := c.Stats(); st.ShardsLost != 0 || st.StreamArn != "arn:aws:dynamodb:us-east-1:000000000000:table/tbl/stream/2" {
		t.Errorf("stats: %+v", st)
	}
}

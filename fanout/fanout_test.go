package fanout_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/tieredcache/tieredcache/fanout"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
)

// TestEndToEndEvictsThroughBridge: a write on pod A evicts pod B's copy
// through the bridge and NATS; neither pod reads the stream.
// It runs over each transport, behind the reader-limit guard (as every
// bridge test does, see newBridge).
func TestEndToEndEvictsThroughBridge(t *testing.T) {
	for _, tc := range transports {
		t.Run(tc.name, func(t *testing.T) {
			srv := tc.start(t)
			endToEnd(t, tc.name, 300, srv.dial(t), srv.dial(t), srv.dial(t))
		})
	}
}

// endToEnd runs n cross writes between two pods through one bridge, each
// on its own transport connection.
func endToEnd(t *testing.T, name string, n int, ta, tb, tbr fanout.Transport) {
	cfg := dynamolocal.AWSConfig(dynamolocal.ForTest(t).Endpoint())
	table := dynamolocal.TableName(t)
	a := newPod(t, cfg, table, ta)
	b := newPod(t, cfg, table, tb)
	br := newBridge(t, cfg, table, "bridge-1", tbr, nil)
	waitFor(t, "the bridge to lead", func() bool { return br.Stats().Leader })
	waitFor(t, "both pods trusted", func() bool { return trusted(a)() && trusted(b)() })

	lags := make([]time.Duration, 0, n)
	flushed := 0
	for i := range n {
		lag, f := crossWrite(t, a, b, "k"+itoa(i), "v"+itoa(i))
		lags = append(lags, lag)
		if f {
			flushed++
		}
	}
	t.Logf("ack->evict over %d writes through bridge+%s: p50 %v, p99 %v, max %v (%d dropped by a flush: epoch changes %d)",
		n, name, percentile(lags, 0.50), percentile(lags, 0.99), percentile(lags, 1), flushed, b.src.PodStats().EpochChanges)
	st := br.Stats()
	t.Logf("bridge: %d messages, %d keys, %d GetRecords; lease: epoch %d, %d takeovers, %d renewals (slowest %v, %d failed), %d pauses",
		st.Published, st.Keys, st.GetRecords, st.Epoch, st.Takeovers, st.Renewals, st.RenewMax, st.RenewErrors, st.Pauses)
	if st.Keys < int64(n) {
		t.Fatalf("bridge published %d keys for %d writes", st.Keys, n)
	}
	for _, p := range []*pod{a, b} {
		if s := p.Stats().Stream; s.StreamArn != "" || s.Shards != 0 {
			t.Fatalf("a pod follows a stream: %+v", s)
		}
		if ps := p.src.PodStats(); ps.Gaps != 0 || ps.Undecodable != 0 {
			t.Fatalf("messages lost or unreadable on loopback: %+v", ps)
		}
	}
	if g := guardOf(t, table).Stats(); g.Admitted == 0 || g.MaxReaders > 1 {
		t.Fatalf("the bridge's reads did not pass the guard as one reader: %+v", g)
	}
}

// dropping is a Transport that drops the next message when armed.
type dropping struct {
	fanout.Transport
	armed   atomic.Bool
	dropped atomic.Int32
}

func (d *dropping) Subscribe(subject string, onMsg func([]byte), onState func(fanout.ConnState)) (func(), error) {
	return d.Transport.Subscribe(subject, func(b []byte) {
		if d.armed.CompareAndSwap(true, false) {
			d.dropped.Add(1)
			return
		}
		onMsg(b)
	}, onState)
}

// TestSequenceGapFlushes: one lost batch makes the pod flush its L1.
func TestSequenceGapFlushes(t *testing.T) {
	cfg := dynamolocal.AWSConfig(dynamolocal.ForTest(t).Endpoint())
	table := dynamolocal.TableName(t)
	ns := startNATS(t)
	tr := &dropping{Transport: dial(t, ns)}
	p := newPod(t, cfg, table, tr)
	br := newBridge(t, cfg, table, "bridge-1", dial(t, ns), nil)
	waitFor(t, "the pod trusted", trusted(p))
	ctx := testContext(t)
	if _, err := p.GetOrLoad(ctx, "kept", func(context.Context, string) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	// Let the fill's own stream record come back and evict it, then fill
	// again: the entry is now in L1 with nothing pending for it.
	p.awaitEvent(t, "kept")
	if _, err := p.Get(ctx, "kept"); err != nil {
		t.Fatal(err)
	}
	hits := p.Stats().L1.Hits
	if _, err := p.Get(ctx, "kept"); err != nil || p.Stats().L1.Hits != hits+1 {
		t.Fatalf("the entry is not in L1 before the gap (err %v)", err)
	}
	before := p.src.PodStats()
	tr.armed.Store(true)
	waitFor(t, "a dropped message", func() bool { return tr.dropped.Load() == 1 })
	waitFor(t, "the pod to see the gap", func() bool { return p.src.PodStats().Gaps == before.Gaps+1 })
	if p.Stats().Stream.Flushes <= uint64(before.Flushes) {
		t.Fatalf("no flush counted after the gap")
	}
	hits, misses := p.Stats().L1.Hits, p.Stats().L1.Misses
	if _, err := p.Get(ctx, "kept"); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats().L1; st.Hits != hits || st.Misses != misses+1 {
		t.Fatalf("the entry survived the gap's flush: L1 hits %d->%d misses %d->%d", hits, st.Hits, misses, st.Misses)
	}
	waitFor(t, "trust back after the gap", trusted(p))
	_ = br
}

// TestTransportLossLapsesTrustAndFlushes: NATS down for a few seconds: the
// pods' trust lapses by itself, and they flush when the connection is back.
func TestTransportLossLapsesTrustAndFlushes(t *testing.T) {
	for _, tc := range transports {
		t.Run(tc.name, func(t *testing.T) { transportLoss(t, tc.start(t)) })
	}
}

func transportLoss(t *testing.T, ns pubsubServer) {
	cfg := dynamolocal.AWSConfig(dynamolocal.ForTest(t).Endpoint())
	table := dynamolocal.TableName(t)
	a := newPod(t, cfg, table, ns.dial(t))
	b := newPod(t, cfg, table, ns.dial(t))
	br := newBridge(t, cfg, table, "bridge-1", ns.dial(t), nil)
	waitFor(t, "both pods trusted", func() bool { return trusted(a)() && trusted(b)() })
	crossWrite(t, a, b, "before", "v1")

	fa, fb := a.Stats().Stream.Flushes, b.Stats().Stream.Flushes
	stopped := time.Now()
	ns.stop()
	waitFor(t, "both pods degraded", func() bool { return !trusted(a)() && !trusted(b)() })
	t.Logf("server stopped: both pods degraded after %v (T/2 = %v)", time.Since(stopped), fanout.DefaultStalenessBound/2)
	time.Sleep(3 * time.Second) // the outage itself: the server stays down this long
	ns.start()
	waitFor(t, "both pods reconnected", func() bool {
		return a.src.PodStats().Reconnects >= 1 && b.src.PodStats().Reconnects >= 1
	})
	waitFor(t, "both pods trusted again", func() bool { return trusted(a)() && trusted(b)() })
	if a.Stats().Stream.Flushes <= fa || b.Stats().Stream.Flushes <= fb {
		t.Fatalf("a pod did not flush on reconnect: %d->%d, %d->%d", fa, a.Stats().Stream.Flushes, fb, b.Stats().Stream.Flushes)
	}
	crossWrite(t, a, b, "after", "v2")
	t.Logf("bridge after the outage: %+v", br.Stats())
}

// failingRenewals makes the lease's UpdateItem (renewals) fail when set.
type failingRenewals struct {
	*dynamodb.Client
	fail atomic.Bool
}

func (f *failingRenewals) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if f.fail.Load() {
		return nil, errors.New("injected: renewal refused")
	}
	return f.Client.UpdateItem(ctx, in, optFns...)
}

// TestLeaderFailover: the leader cannot renew its lease; it steps down on
// its own before the standby takes over with a higher epoch; its last stream
// read ended before the standby's takeover began; the pods flush on the new
// epoch and keep receiving invalidations.
func TestLeaderFailover(t *testing.T) {
	cfg := dynamolocal.AWSConfig(dynamolocal.ForTest(t).Endpoint())
	table := dynamolocal.TableName(t)
	ns := startNATS(t)
	a := newPod(t, cfg, table, dial(t, ns))
	b := newPod(t, cfg, table, dial(t, ns))
	ddb1 := &failingRenewals{Client: l2.NewClient(cfg)}
	b1 := newBridge(t, cfg, table, "bridge-1", dial(t, ns), ddb1)
	waitFor(t, "bridge-1 to lead", func() bool { return b1.Stats().Leader })
	b2 := newBridge(t, cfg, table, "bridge-2", dial(t, ns), nil)
	waitFor(t, "both pods trusted", func() bool { return trusted(a)() && trusted(b)() })
	crossWrite(t, a, b, "before", "v1")
	if b2.Stats().Leader || b2.Stats().GetRecords != 0 {
		t.Fatalf("the standby reads the stream while bridge-1 leads: %+v", b2.Stats())
	}
	old := b1.Stats()

	ddb1.fail.Store(true)
	waitFor(t, "bridge-2 to lead", func() bool { return b2.Stats().Leader })
	s1, s2 := b1.Stats(), b2.Stats()
	if s2.Epoch <= old.Epoch {
		t.Fatalf("takeover epoch %d, old %d: want higher", s2.Epoch, old.Epoch)
	}
	if s1.Leader {
		t.Fatalf("bridge-1 still leads after bridge-2 took over")
	}
	if !s1.LastReadEnd.Before(s2.LeadingSince) {
		t.Fatalf("two readers: bridge-1's last GetRecords ended at %v, after bridge-2's takeover began at %v",
			s1.LastReadEnd, s2.LeadingSince)
	}
	waitFor(t, "both pods on the new epoch", func() bool {
		return a.src.PodStats().Epoch == s2.Epoch && b.src.PodStats().Epoch == s2.Epoch
	})
	for _, p := range []*pod{a, b} {
		if p.src.PodStats().EpochChanges < 1 {
			t.Fatalf("a pod did not flush on the epoch change: %+v", p.src.PodStats())
		}
	}
	waitFor(t, "both pods trusted again", func() bool { return trusted(a)() && trusted(b)() })
	crossWrite(t, a, b, "after", "v2")
	crossWrite(t, b, a, "after2", "v3")
	if got := b1.Stats().GetRecords; got != s1.GetRecords {
		t.Fatalf("bridge-1 read the stream after the takeover: GetRecords %d -> %d", s1.GetRecords, got)
	}
	// Two candidates, one guard: the limit is never hit (newBridge's
	// cleanup checks it again once both bridges are closed).
	if g := guardOf(t, table).Stats(); g.Admitted == 0 || g.Refused != 0 {
		t.Fatalf("reader-limit guard: %+v; want reads admitted and none refused", g)
	}
	t.Logf("failover: epoch %d -> %d; bridge-1 stepped down %v before bridge-2's takeover began",
		old.Epoch, s2.Epoch, s2.LeadingSince.Sub(s1.LastReadEnd))
}

package tiered_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/tiered"
)

// scriptedSource is an invalidation.Source the test drives by hand through
// the sink the cache gives it.
type scriptedSource struct {
	cfg      invalidation.SourceConfig
	startErr error
	started  atomic.Bool
	closes   atomic.Int32
	stats    invalidation.Stats
}

func (s *scriptedSource) Start(_ context.Context, cfg invalidation.SourceConfig) error {
	s.cfg = cfg
	s.started.Store(true)
	return s.startErr
}

func (s *scriptedSource) Close() error { s.closes.Add(1); return nil }

func (s *scriptedSource) Stats() invalidation.Stats { return s.stats }

func TestInvalidationSourceReplacesTheConsumer(t *testing.T) {
	src := &scriptedSource{stats: invalidation.Stats{Changes: 7, Flushes: 3}}
	n := newNode(t, dynamolocal.TableName(t), func(o *tiered.Options[string]) { o.Invalidation = src })
	ctx := testContext(t)
	if !src.started.Load() || src.cfg.Sink == nil || src.cfg.Now == nil || src.cfg.Logger == nil {
		t.Fatalf("source not started with a full config: %+v", src.cfg)
	}
	if want := tiered.DefaultStalenessBound / 2; src.cfg.StaleAfter != want {
		t.Fatalf("StaleAfter = %v, want T/2 = %v", src.cfg.StaleAfter, want)
	}
	st := n.Stats()
	if !st.Stream.Enabled || !st.Stream.Degraded || st.Stream.Changes != 7 || st.Stream.Flushes != 3 {
		t.Fatalf("before any trust: stream stats %+v; want enabled, degraded, the source's counters", st.Stream)
	}
	if got := n.ops.get("DescribeTable"); got == 0 {
		t.Fatalf("the table was not checked")
	}

	src.cfg.Sink.TrustUntil(src.cfg.Now().Add(time.Hour))
	if n.Stats().Stream.Degraded {
		t.Fatalf("trust granted by the source does not hold")
	}
	if v, err := n.GetOrLoad(ctx, "k", constLoader("v1")); err != nil || v != "v1" {
		t.Fatalf("GetOrLoad = %q, %v", v, err)
	}
	hits := n.Stats().L1.Hits
	if _, err := n.Get(ctx, "k"); err != nil || n.Stats().L1.Hits != hits+1 {
		t.Fatalf("the filled entry is not served from L1 while trusted (err %v)", err)
	}
	src.cfg.Sink.Changed(invalidation.Change{PartitionKey: "#k", EventName: "MODIFY"})
	if k := awaitRecv(t, n.events, "the source's change"); k != "k" {
		t.Fatalf("invalidated %q, want k", k)
	}
	hits = n.Stats().L1.Hits
	if _, err := n.Get(ctx, "k"); err != nil || n.Stats().L1.Hits != hits {
		t.Fatalf("a key the source reported changed is still served from L1 (err %v)", err)
	}

	src.cfg.Sink.TrustUntil(time.Time{})
	if !n.Stats().Stream.Degraded {
		t.Fatalf("trust withdrawn by the source still holds")
	}
	if n.ops.get("DescribeStream") != 0 {
		t.Fatalf("a cache with Options.Invalidation looked for the stream")
	}
	_ = n.Close()
	_ = n.Close()
	if got := src.closes.Load(); got != 1 {
		t.Fatalf("Close closed the source %d times, want 1", got)
	}
}

func TestInvalidationSourceStartFailureFailsNew(t *testing.T) {
	boom := errors.New("boom")
	src := &scriptedSource{startErr: boom}
	cfg := awsConfig(t)
	_, err := tiered.New(testContext(t), tiered.Options[string]{Table: dynamolocal.TableName(t), CreateTable: true, AWS: &cfg,
		CallTimeout: testCallTimeout, Invalidation: src})
	if !errors.Is(err, boom) {
		t.Fatalf("New = %v, want the source's error", err)
	}
	if src.closes.Load() != 1 {
		t.Fatalf("a source that failed to start was not closed")
	}
}

package fanout_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/fanout"
	"github.com/tieredcache/tieredcache/invalidation"
)

// handTransport is a Transport whose messages the test delivers by hand.
type handTransport struct{ onMsg func([]byte) }

func (h *handTransport) Publish(context.Context, string, []byte) error { return nil }
func (h *handTransport) Subscribe(_ string, onMsg func([]byte), _ func(fanout.ConnState)) (func(), error) {
	h.onMsg = onMsg
	return func() {}, nil
}

// trustSink records the last trust deadline granted.
type trustSink struct {
	mu    sync.Mutex
	until time.Time
}

func (s *trustSink) Changed(invalidation.Change) {}
func (s *trustSink) Flush(error)                 {}
func (s *trustSink) TrustUntil(u time.Time)      { s.mu.Lock(); s.until = u; s.mu.Unlock() }
func (s *trustSink) last() time.Time             { s.mu.Lock(); defer s.mu.Unlock(); return s.until }

// TestPodTrustTakesOffMaxTransit: the trust a message grants is its
// watermark on the pod's clock (through the smallest receive-SentAt of the
// epoch) + T/2 - MaxTransit; a faster later message moves the clock mapping
// earlier, a slower one never later.
func TestPodTrustTakesOffMaxTransit(t *testing.T) {
	const half = time.Second // T/2
	maxTransit := fanout.DefaultMaxTransit(2 * half)
	if maxTransit != 100*time.Millisecond {
		t.Fatalf("DefaultMaxTransit(2s) = %v, want 100ms", maxTransit)
	}
	tr := &handTransport{}
	p, err := fanout.NewPod(fanout.PodOptions{Transport: tr, Subject: "s"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	now := t0
	sink := &trustSink{}
	if err := p.Start(context.Background(), invalidation.SourceConfig{Sink: sink, StaleAfter: half,
		Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()

	// The bridge's clock is 7 s ahead of the pod's (origins differ).
	const skew = -7 * time.Second
	var seq uint64
	send := func(sentAt, age, transit time.Duration) time.Time {
		t.Helper()
		seq++
		now = t0.Add(sentAt + skew + transit)
		tr.onMsg(fanout.AppendMessage(nil, &fanout.Message{Epoch: 1, Seq: seq,
			SentAt: int64(sentAt), WatermarkAge: int64(age), Keys: []string{}}))
		return sink.last()
	}
	// want: the watermark mapped with the smallest transit seen so far.
	want := func(sentAt, age, minTransit time.Duration) time.Time {
		return t0.Add(sentAt - age + skew + minTransit + half - maxTransit)
	}

	if got, w := send(10*time.Second, 80*time.Millisecond, 30*time.Millisecond),
		want(10*time.Second, 80*time.Millisecond, 30*time.Millisecond); !got.Equal(w) {
		t.Fatalf("first grant: until %v after t0, want %v", got.Sub(t0), w.Sub(t0))
	}
	// A faster message: the estimate of the bridge's clock moves earlier.
	if got, w := send(10*time.Second+500*time.Millisecond, 60*time.Millisecond, 2*time.Millisecond),
		want(10*time.Second+500*time.Millisecond, 60*time.Millisecond, 2*time.Millisecond); !got.Equal(w) {
		t.Fatalf("after a faster message: until %v after t0, want %v", got.Sub(t0), w.Sub(t0))
	}
	// A slower one: its extra delay counts against trust, not for it.
	if got, w := send(11*time.Second, 60*time.Millisecond, 200*time.Millisecond),
		want(11*time.Second, 60*time.Millisecond, 2*time.Millisecond); !got.Equal(w) {
		t.Fatalf("after a slower message: until %v after t0, want %v", got.Sub(t0), w.Sub(t0))
	}
	if s := p.PodStats(); s.Messages != 3 || s.Gaps != 0 {
		t.Fatalf("pod stats %+v: want 3 messages, no gap", s)
	}
}

// TestPodRefusesMaxTransitOfHalfT: a MaxTransit of T/2 or more would never
// grant trust; Start refuses it, NewPod a negative one.
func TestPodRefusesMaxTransitOfHalfT(t *testing.T) {
	if _, err := fanout.NewPod(fanout.PodOptions{Transport: &handTransport{}, Subject: "s", MaxTransit: -1}); err == nil {
		t.Fatal("NewPod accepted a negative MaxTransit")
	}
	p, err := fanout.NewPod(fanout.PodOptions{Transport: &handTransport{}, Subject: "s", MaxTransit: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Start(context.Background(), invalidation.SourceConfig{Sink: &trustSink{}, StaleAfter: time.Second,
		Now: time.Now, Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		t.Fatal("Start accepted MaxTransit = T/2")
	}
}

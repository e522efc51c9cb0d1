package invalidation_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/invalidation"
)

// Generous timeouts: the race detector on a shared 2-core machine is slow.
const wait = 10 * time.Second

func testOptions(f *fakeStreams, sink invalidation.Sink) invalidation.Options {
	s, tb := f.clients()
	return invalidation.Options{
		Streams: s, Tables: tb, Table: f.table, Sink: sink,
		PollInterval:      5 * time.Millisecond,
		StaleAfter:        2 * time.Second, // no lapse on a loaded machine unless a test wants one (it sets its own)
		DescribeInterval:  50 * time.Millisecond,
		ShardListInterval: 200 * time.Millisecond,
		MaxBackoff:        100 * time.Millisecond,
		CallTimeout:       2 * time.Second,
	}
}

func start(t *testing.T, f *fakeStreams, mod func(*invalidation.Options)) (*invalidation.Consumer, *recSink) {
	t.Helper()
	sink := newSink(t)
	o := testOptions(f, sink)
	if mod != nil {
		mod(&o)
	}
	c, err := invalidation.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if evs := sink.events(); len(evs) != 1 || evs[0].kind != evTrusted {
		t.Fatalf("after Start want exactly [trusted], got %v", summary(evs))
	}
	return c, sink
}

func TestPaginatedListingAndLatestStart(t *testing.T) {
	f := newFake(t)
	f.pageSize = 2
	f.addShard("old-1", "", true)
	f.addShard("old-2", "old-1", true)
	for _, id := range []string{"s1", "s2", "s3", "s4", "s5"} {
		f.addShard(id, "old-2", false)
	}
	f.put("s1", "before-start")
	c, sink := start(t, f, nil)
	if got := f.callCount("DescribeStream"); got < 4 {
		t.Errorf("7 shards at 2 a page need 4 DescribeStream pages, got %d calls", got)
	}
	for _, id := range []string{"s1", "s2", "s3", "s4", "s5"} {
		reqs := f.iterRequestsFor(id)
		if len(reqs) == 0 || reqs[0].Type != "LATEST" {
			t.Errorf("shard %s: want a LATEST iterator at start, got %v", id, reqs)
		}
		f.put(id, "k-"+id)
	}
	if reqs := f.iterRequestsFor("old-1"); len(reqs) != 0 {
		t.Errorf("closed shard at start must not be read, got %v", reqs)
	}
	evs := sink.awaitKeys(t, wait, "k-s1", "k-s2", "k-s3", "k-s4", "k-s5")
	if keyIndex(evs, "before-start") >= 0 {
		t.Errorf("a record written before Start was reported: LATEST not honoured")
	}
	st := c.Stats()
	if st.Shards != 5 || !st.Healthy || !st.Trusted || st.Changes < 5 || st.Flushes != 0 {
		t.Errorf("stats: %+v", st)
	}
}

func TestSplitReadsParentBeforeChildren(t *testing.T) {
	for _, filter := range []bool{true, false} {
		name := "ShardFilter"
		if !filter {
			name = "FilterRejectedFallback"
		}
		t.Run(name, func(t *testing.T) {
			f := newFake(t)
			f.filterSupported = filter
			f.addShard("P", "", false)
			c, sink := start(t, f, nil)
			f.put("P", "p1", "p2", "p3")
			sink.awaitKeys(t, wait, "p1") // the parent is being read
			f.addShard("C1", "P", false)
			f.addShard("C2", "P", false)
			f.put("C1", "c1a", "c1b")
			f.put("C2", "c2a")
			f.put("P", "p4", "p5")
			f.closeShard("P")
			evs := sink.awaitKeys(t, wait, "c1a", "c1b", "c2a", "p5")
			last := 0
			for _, k := range []string{"p1", "p2", "p3", "p4", "p5"} {
				last = max(last, keyIndex(evs, k))
			}
			for _, k := range []string{"c1a", "c1b", "c2a"} {
				if i := keyIndex(evs, k); i < last {
					t.Errorf("child record %s (event %d) before the parent's last record (event %d): %v", k, i, last, summary(evs))
				}
			}
			if keyIndex(evs, "c1a") > keyIndex(evs, "c1b") {
				t.Errorf("order within a shard broken: %v", summary(evs))
			}
			for _, id := range []string{"C1", "C2"} {
				if reqs := f.iterRequestsFor(id); len(reqs) == 0 || reqs[0].Type != "TRIM_HORIZON" {
					t.Errorf("child %s must start at TRIM_HORIZON, got %v", id, reqs)
				}
			}
			if n := count(evs, evFlush); n != 0 {
				t.Errorf("a split must not flush: %v", summary(evs))
			}
			st := c.Stats()
			if st.ShardsCompleted != 1 || st.Shards != 2 {
				t.Errorf("want 1 shard completed, 2 followed: %+v", st)
			}
		})
	}
}

func TestMergedChildWaitsForBothParents(t *testing.T) {
	f := newFake(t)
	f.addShard("P", "", false)
	_, sink := start(t, f, nil)
	f.addShard("A", "P", false)
	f.addShard("B", "P", false)
	f.put("P", "p1")
	f.closeShard("P")
	f.put("A", "a0")
	f.put("B", "b0")
	sink.awaitKeys(t, wait, "p1", "a0", "b0")
	// B is slowed by throttling so that A ends first; the merged child C
	// (ParentShardId A, listed as B's child too) must still wait for B.
	f.inject("GetRecords", "B", "LimitExceededException", 6)
	f.put("A", "a1", "a2")
	f.put("B", "b1", "b2")
	m := f.addShard("C", "A", false)
	m.alsoChildOf = []string{"B"}
	f.put("C", "c1", "c2")
	f.closeShard("A")
	f.closeShard("B")
	evs := sink.awaitKeys(t, wait, "c1", "c2", "b2", "a2")
	for _, k := range []string{"a1", "a2", "b1", "b2"} {
		if keyIndex(evs, k) > keyIndex(evs, "c1") {
			t.Errorf("merged child's record before parent record %s: %v", k, summary(evs))
		}
	}
	if reqs := f.iterRequestsFor("C"); len(reqs) != 1 || reqs[0].Type != "TRIM_HORIZON" {
		t.Errorf("merged child must be started once at TRIM_HORIZON, got %v", reqs)
	}
}

func TestTrimmedDataFlushesAndRecovers(t *testing.T) {
	f := newFake(t)
	f.addShard("S", "", false)
	c, sink := start(t, f, nil)
	f.put("S", "k1")
	sink.awaitKeys(t, wait, "k1")
	// k2 and k3 are trimmed before the consumer reads them.
	f.set(func(f *fakeStreams) { f.gate = make(chan struct{}) })
	f.put("S", "k2", "k3")
	f.trim("S", 3)
	f.set(func(f *fakeStreams) { close(f.gate); f.gate = nil })
	evs := sink.await(t, "flush, untrusted, recovery", wait, func(evs []ev) bool {
		i := indexOf(evs, evFlush, invalidation.ErrTrimmed, 0)
		return i >= 0 && indexOf(evs, evTrusted, nil, i) >= 0
	})
	i := indexOf(evs, evFlush, invalidation.ErrTrimmed, 0)
	if evs[i+1].kind != evUntrusted {
		t.Errorf("want untrusted right after the trimmed flush: %v", summary(evs))
	}
	j := indexOf(evs, evTrusted, nil, i)
	if evs[j-1].kind != evFlush || !errors.Is(evs[j-1].reason, invalidation.ErrRecovered) {
		t.Errorf("want Flush(ErrRecovered) right before trusted again: %v", summary(evs))
	}
	if keyIndex(evs, "k2") >= 0 {
		t.Errorf("trimmed record reported: %v", summary(evs))
	}
	reqs := f.iterRequestsFor("S")
	if last := reqs[len(reqs)-1]; last.Type != "LATEST" {
		t.Errorf("after a trim want LATEST, got %v", reqs)
	}
	f.put("S", "k4")
	sink.awaitKeys(t, wait, "k4")
	if st := c.Stats(); st.Flushes != 2 || !st.Trusted {
		t.Errorf("stats: %+v", st)
	}
}

func TestExpiredIteratorResumesAfterLastRecord(t *testing.T) {
	f := newFake(t)
	f.addShard("S", "", false)
	c, sink := start(t, f, nil)
	f.put("S", "k1", "k2")
	sink.awaitKeys(t, wait, "k1", "k2")
	var seq2 string
	for _, e := range sink.events() {
		if e.kind == evChanged && e.change.PartitionKey == "k2" {
			seq2 = e.change.SequenceNumber
		}
	}
	f.set(func(f *fakeStreams) { f.gate = make(chan struct{}) })
	f.expireAll()
	f.put("S", "k3")
	f.set(func(f *fakeStreams) { close(f.gate); f.gate = nil })
	evs := sink.awaitKeys(t, wait, "k3")
	found := false
	for _, r := range f.iterRequestsFor("S") {
		if r.Type == "AFTER_SEQUENCE_NUMBER" && r.Seq == seq2 {
			found = true
		}
	}
	if !found {
		t.Errorf("want AFTER_SEQUENCE_NUMBER %s, got %v", seq2, f.iterRequestsFor("S"))
	}
	if count(evs, evFlush) != 0 {
		t.Errorf("an expired iterator with a known position must not flush: %v", summary(evs))
	}
	n := 0
	for _, e := range evs {
		if e.kind == evChanged {
			n++
		}
	}
	if n != 3 {
		t.Errorf("want k1,k2,k3 once each: %v", summary(evs))
	}
	if st := c.Stats(); st.IteratorsRenewed < 1 {
		t.Errorf("IteratorsRenewed not counted: %+v", st)
	}
}

func TestExpiredIteratorWithoutPositionFlushes(t *testing.T) {
	f := newFake(t)
	f.addShard("S", "", false)
	_, sink := start(t, f, nil)
	f.expireAll()
	evs := sink.await(t, "flush and recovery", wait, func(evs []ev) bool {
		i := indexOf(evs, evFlush, invalidation.ErrPositionLost, 0)
		return i >= 0 && indexOf(evs, evTrusted, nil, i) >= 0
	})
	if indexOf(evs, evUntrusted, nil, 0) < 0 {
		t.Errorf("want untrusted while the position is unknown: %v", summary(evs))
	}
	reqs := f.iterRequestsFor("S")
	if len(reqs) != 2 || reqs[1].Type != "LATEST" {
		t.Errorf("want a second LATEST iterator, got %v", reqs)
	}
	f.put("S", "k1")
	sink.awaitKeys(t, wait, "k1")
}

func TestThrottlingBacksOffWithoutFlushing(t *testing.T) {
	f := newFake(t)
	f.addShard("S", "", false)
	f.inject("DescribeStream", "", "LimitExceededException", 2)
	f.inject("DescribeTable", "", "ThrottlingException", 1)
	c, sink := start(t, f, func(o *invalidation.Options) { o.StaleAfter = 5 * time.Second })
	f.inject("GetRecords", "S", "LimitExceededException", 5)
	before := f.callCount("GetRecords")
	t0 := time.Now()
	f.put("S", "k1")
	evs := sink.awaitKeys(t, wait, "k1")
	// Backoff 50ms doubling, capped at 100ms, equal jitter: at least
	// 25+50+50+50+50 ms over 5 throttled calls.
	if d := time.Since(t0); d < 200*time.Millisecond {
		t.Errorf("5 throttled calls passed in %v: no backoff", d)
	}
	if n := f.callCount("GetRecords") - before; n > 12 {
		t.Errorf("%d GetRecords calls while throttled: hammering", n)
	}
	if count(evs, evFlush) != 0 {
		t.Errorf("throttling must not flush: %v", summary(evs))
	}
	if st := c.Stats(); st.Throttles < 8 || st.Errors < 8 || st.LastError == "" {
		t.Errorf("throttles not counted: %+v", st)
	}
}

func TestStreamDisabledThenNewStream(t *testing.T) {
	f := newFake(t)
	f.addShard("S", "", false)
	c, sink := start(t, f, nil)
	f.put("S", "k1")
	sink.awaitKeys(t, wait, "k1")

	f.set(func(f *fakeStreams) { f.enabled = false })
	evs := sink.awaitKind(t, wait, evFlush, invalidation.ErrStreamDisabled)
	i := indexOf(evs, evFlush, invalidation.ErrStreamDisabled, 0)
	sink.await(t, "untrusted", wait, func(evs []ev) bool { return indexOf(evs, evUntrusted, nil, i) >= 0 })
	if st := c.Stats(); st.Healthy || st.Trusted {
		t.Errorf("disabled stream: %+v", st)
	}

	// Re-enabled: a new stream ARN with a shard that already holds a record.
	f.set(func(f *fakeStreams) {
		f.arn = "arn:aws:dynamodb:us-east-1:000000000000:table/tbl/stream/2"
		f.enabled = true
		f.shards, f.byID = nil, map[string]*fShard{}
	})
	f.addShard("N", "", false)
	f.put("N", "before-enable-seen")
	evs = sink.await(t, "trusted again", wait, func(evs []ev) bool { return indexOf(evs, evTrusted, nil, i) >= 0 })
	j := indexOf(evs, evTrusted, nil, i)
	if evs[j-1].kind != evFlush || !errors.Is(evs[j-1].reason, invalidation.ErrRecovered) {
		t.Errorf("want Flush(ErrRecovered) then trusted: %v", summary(evs))
	}
	if reqs := f.iterRequestsFor("N"); len(reqs) == 0 || reqs[0].Type != "LATEST" {
		t.Errorf("new stream must start at LATEST, got %v", reqs)
	}
	f.put("N", "n1")
	evs = sink.awaitKeys(t, wait, "n1")
	if keyIndex(evs, "before-enable-seen") >= 0 {
		t.Errorf("record before the new iterators was reported")
	}

	// The ARN changes while enabled (e.g. view type changed): flush at once.
	f.set(func(f *fakeStreams) {
		f.arn = "arn:aws:dynamodb:us-east-1:000000000000:table/tbl/stream/3"
		f.shards, f.byID = nil, map[string]*fShard{}
	})
	f.addShard("M", "", false)
	evs = sink.awaitKind(t, wait, evFlush, invalidation.ErrStreamChanged)
	k := indexOf(evs, evFlush, invalidation.ErrStreamChanged, 0)
	sink.await(t, "trusted on the third stream", wait, func(evs []ev) bool { return indexOf(evs, evTrusted, nil, k) >= 0 })
	if st := c.Stats(); st.StreamArn != "arn:aws:dynamodb:us-east-1:000000000000:table/tbl/stream/3" {
		t.Errorf("StreamArn %q", st.StreamArn)
	}
}

func TestStaleShardUntrustsThenRecovers(t *testing.T) {
	f := newFake(t)
	f.addShard("S", "", false)
	c, sink := start(t, f, func(o *invalidation.Options) { o.StaleAfter = 300 * time.Millisecond })
	t0 := time.Now()
	f.set(func(f *fakeStreams) { f.gate = make(chan struct{}) })
	evs := sink.awaitKind(t, wait, evUntrusted, nil)
	d := evs[indexOf(evs, evUntrusted, nil, 0)].at.Sub(t0)
	t.Logf("untrusted %v after polls stopped (StaleAfter 300ms)", d)
	if d > 300*time.Millisecond+200*time.Millisecond {
		t.Errorf("untrusted only after %v", d)
	}
	if st := c.Stats(); st.Healthy || st.Lag < 300*time.Millisecond {
		t.Errorf("stale consumer stats: %+v", st)
	}
	f.set(func(f *fakeStreams) { close(f.gate); f.gate = nil })
	evs = sink.await(t, "recovery", wait, func(evs []ev) bool { return count(evs, evTrusted) == 2 })
	j := len(evs) - 1
	for evs[j].kind != evTrusted {
		j--
	}
	if evs[j-1].kind != evFlush || !errors.Is(evs[j-1].reason, invalidation.ErrRecovered) {
		t.Errorf("want Flush(ErrRecovered) before trusted: %v", summary(evs))
	}
}

func TestDynamoDBLocalQuirks(t *testing.T) {
	f := newFake(t)
	f.addShard("S", "", false)
	f.put("S", "old")
	f.set(func(f *fakeStreams) { f.trimOnLatest = 1 })
	// Trust must not lapse while the quirks are worked around, however
	// loaded the machine: a lapse flushes on recovery, and this test is
	// about quirks never flushing.
	c, sink := start(t, f, func(o *invalidation.Options) { o.StaleAfter = time.Minute })
	f.put("S", "k1")
	// TrimmedDataAccessException on a fresh LATEST iterator: re-read from
	// TRIM_HORIZON (at-least-once), no flush.
	sink.awaitKeys(t, wait, "k1")
	// No NextShardIterator on a shard that is still open.
	f.set(func(f *fakeStreams) { f.noNextOnOpen = 2 })
	f.put("S", "k2")
	sink.awaitKeys(t, wait, "k2")
	f.put("S", "k3")
	sink.awaitKeys(t, wait, "k3")
	// "Invalid ShardId in ShardIterator" (a ValidationException) on GetRecords.
	f.inject("GetRecords", "S", "ValidationException", 1)
	f.put("S", "k4")
	evs := sink.awaitKeys(t, wait, "k4")
	if n := count(evs, evFlush); n != 0 {
		t.Errorf("quirks must not flush: %v", summary(evs))
	}
	if st := c.Stats(); st.Quirks < 2 || !st.Trusted {
		t.Errorf("quirks not counted: %+v", st)
	}
}

func TestTTLRemoveIsFlagged(t *testing.T) {
	f := newFake(t)
	f.addShard("S", "", false)
	_, sink := start(t, f, nil)
	f.put("S", "user")
	f.putTTL("S", "swept")
	evs := sink.awaitKeys(t, wait, "user", "swept")
	for _, e := range evs {
		if e.kind != evChanged {
			continue
		}
		c := e.change
		switch c.PartitionKey {
		case "user":
			if c.ByTTL || c.EventName != "MODIFY" || c.Created.IsZero() || c.SequenceNumber == "" {
				t.Errorf("user change: %+v", c)
			}
		case "swept":
			if !c.ByTTL || c.EventName != "REMOVE" {
				t.Errorf("TTL delete: %+v", c)
			}
		}
	}
}

func TestStartAndCloseRules(t *testing.T) {
	f := newFake(t)
	f.addShard("S", "", false)
	sink := newSink(t)

	if _, err := invalidation.New(invalidation.Options{}); !errors.Is(err, invalidation.ErrInvalidOptions) {
		t.Errorf("empty options: %v", err)
	}
	o := testOptions(f, sink)
	o.PollInterval = -1
	var oe *invalidation.OptionsError
	if _, err := invalidation.New(o); !errors.As(err, &oe) || oe.Field != "PollInterval" {
		t.Errorf("negative PollInterval: %v", err)
	}

	f.set(func(f *fakeStreams) { f.enabled = false })
	c, err := invalidation.New(testOptions(f, sink))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); !errors.Is(err, invalidation.ErrStreamDisabled) {
		t.Errorf("Start on a table without stream: %v", err)
	}
	_ = c.Close()

	f.set(func(f *fakeStreams) { f.enabled = true })
	c, err = invalidation.New(testOptions(f, sink))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); !errors.Is(err, invalidation.ErrStarted) {
		t.Errorf("second Start: %v", err)
	}
	// Close while every call is throttled (readers in backoff) returns promptly.
	f.inject("GetRecords", "", "LimitExceededException", 1000)
	f.inject("DescribeTable", "", "LimitExceededException", 1000)
	time.Sleep(50 * time.Millisecond) // let the readers reach their backoff; not synchronisation
	t0 := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Waiting out the throttles would take 1000 backoffs (up to 100 s); a
	// prompt Close takes milliseconds. 10 s tells them apart on a loaded
	// machine too.
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("Close took %v", d)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	n := len(sink.events())
	if err := c.Start(context.Background()); !errors.Is(err, invalidation.ErrClosed) && !errors.Is(err, invalidation.ErrStarted) {
		t.Errorf("Start after Close: %v", err)
	}
	if len(sink.events()) != n {
		t.Errorf("sink called after Close")
	}
}

func TestStartRetriesUntilContextEnds(t *testing.T) {
	f := newFake(t)
	f.addShard("S", "", false)
	f.inject("GetShardIterator", "", "InternalServerError", 1000)
	c, err := invalidation.New(testOptions(f, newSink(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Long enough for several retries (backoff ≤ MaxBackoff, 100 ms) even
	// on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Start(ctx); err == nil {
		t.Fatal("Start succeeded without iterators")
	}
	if n := f.callCount("GetShardIterator"); n < 2 {
		t.Errorf("Start did not retry: %d calls", n)
	}
}

// syncBuffer is a bytes.Buffer safe for the consumer's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReaderLimitSaysSoAndPointsToFanOut: a consumer whose shard reads AWS
// refuses with LimitExceededException (a third reader of the shard) several
// times within a minute says so, in Stats and once in its log, pointing to
// fan-out; a DescribeStream refusal (another limit) does not count.
func TestReaderLimitSaysSoAndPointsToFanOut(t *testing.T) {
	f := newFake(t)
	f.addShard("S", "", false)
	var logs syncBuffer
	f.inject("DescribeStream", "", "LimitExceededException", 1)
	c, sink := start(t, f, func(o *invalidation.Options) {
		o.StaleAfter = 10 * time.Second
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	if st := c.Stats(); st.ReaderLimitHits != 0 || st.ReaderLimited {
		t.Fatalf("before any refused read: %+v", st)
	}
	f.inject("GetRecords", "S", "LimitExceededException", 4)
	f.put("S", "k1")
	sink.awaitKeys(t, wait, "k1") // read once the refusals are used up
	st := c.Stats()
	if st.ReaderLimitHits != 4 || !st.ReaderLimited || st.Throttles < 4 {
		t.Fatalf("after 4 refused reads: hits %d, limited %v, throttles %d", st.ReaderLimitHits, st.ReaderLimited, st.Throttles)
	}
	if n := strings.Count(logs.String(), "use fan-out"); n != 1 {
		t.Fatalf("%d warnings pointing to fan-out, want 1 (at most one a minute):\n%s", n, logs.String())
	}
}

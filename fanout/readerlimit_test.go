package fanout_test

import (
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/fanout/internal/readerlimit"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/tiered"
)

// TestReaderLimitGuardThrottlesThirdDirectReader shows that the guard the
// fan-out tests run behind enforces AWS's limit: three caches in direct mode
// on one table each read the stream; the first two are admitted, the third
// is refused with LimitExceededException, counted as a throttle in its
// Stats, and goes degraded. The window is a minute rather than AWS's
// second so that which reader is third does not depend on scheduling: the
// first two poll far more often than that, so they keep their places.
func TestReaderLimitGuardThrottlesThirdDirectReader(t *testing.T) {
	cfg := dynamolocal.AWSConfig(dynamolocal.ForTest(t).Endpoint())
	table := dynamolocal.TableName(t)
	g := readerlimit.New(0, time.Minute)
	direct := func() *tiered.Cache[string] {
		c, err := tiered.New(testContext(t), tiered.Options[string]{
			Table: table, CreateTable: true, AWS: &cfg, CallTimeout: 5 * time.Second,
			Streams: invalidation.NewStreamsClient(cfg, g.Options),
		})
		if err != nil {
			t.Fatalf("tiered.New: %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	c1, c2 := direct(), direct()
	waitFor(t, "two readers admitted", func() bool { return g.Reader(1).Admitted > 0 && g.Reader(2).Admitted > 0 })
	c3 := direct()
	if g.Readers() != 3 {
		t.Fatalf("%d clients behind the guard, want 3", g.Readers())
	}
	waitFor(t, "the third reader throttled", func() bool { return c3.Stats().Stream.Throttles >= 1 })

	if r := g.Reader(3); r.Admitted != 0 || r.Refused == 0 {
		t.Fatalf("third reader: %+v, want refused and never admitted", r)
	}
	// It starts trusted (its L1 is empty, its iterator at LATEST), and its
	// trust lapses as its watermark never advances.
	waitFor(t, "the third cache degraded", func() bool { return c3.Stats().Stream.Degraded })
	if st := c3.Stats().Stream; st.Records != 0 {
		t.Fatalf("the third cache read records: %+v", st)
	}
	for i, c := range []*tiered.Cache[string]{c1, c2} {
		waitFor(t, "the first two trusted", trusted(&pod{Cache: c}))
		if st := c.Stats().Stream; st.Throttles != 0 || g.Reader(i+1).Refused != 0 {
			t.Fatalf("reader %d throttled: stream %+v, guard %+v", i+1, st, g.Reader(i+1))
		}
	}
	if st := g.Stats(); st.MaxReaders != readerlimit.DefaultLimit || st.Refused == 0 {
		t.Fatalf("guard: %+v, want %d readers at most and refusals", st, readerlimit.DefaultLimit)
	}
	t.Logf("guard: %+v; third cache's stream stats: %+v", g.Stats(), c3.Stats().Stream)
}

package fanout_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"

	"github.com/tieredcache/tieredcache/fanout/internal/readerlimit"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/tiered"
)

// TestReaderLimitProxyThrottlesThirdNamedReader is the guard as the fan-out
// demo runs it, across processes: an HTTP proxy in front of DynamoDB Local,
// readers named by a header rather than told apart by client instance. Three
// direct-mode caches read the stream through it, each with two clients of
// the same name (a reader that restarts its client stays one reader): the
// first two names are admitted, the third is refused with
// LimitExceededException, which its cache counts as a throttle; the guard's
// per-shard counters agree.
func TestReaderLimitProxyThrottlesThirdNamedReader(t *testing.T) {
	endpoint := dynamolocal.ForTest(t).Endpoint()
	cfg := dynamolocal.AWSConfig(endpoint)
	table := dynamolocal.TableName(t)
	g := readerlimit.New(0, time.Minute)
	h, err := g.Proxy(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	direct := func(name string) *tiered.Cache[string] {
		c, err := tiered.New(testContext(t), tiered.Options[string]{
			Table: table, CreateTable: true, AWS: &cfg, CallTimeout: 5 * time.Second,
			Streams: invalidation.NewStreamsClient(cfg, readerlimit.Named(name),
				func(o *dynamodbstreams.Options) { o.BaseEndpoint = aws.String(srv.URL) }),
		})
		if err != nil {
			t.Fatalf("tiered.New: %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	c1, c2 := direct("a"), direct("b")
	waitFor(t, "two readers admitted", func() bool { return g.Reader(1).Admitted > 0 && g.Reader(2).Admitted > 0 })
	c1b := direct("a") // a second client of reader a: not a new reader
	c3 := direct("c")
	waitFor(t, "the third reader throttled", func() bool { return c3.Stats().Stream.Throttles >= 1 })
	waitFor(t, "a's second client admitted", func() bool { return c1b.Stats().Stream.Records > 0 || g.Reader(1).Admitted > 2 })

	if g.Readers() != 3 {
		t.Fatalf("%d readers behind the proxy, want 3 (a, b, c)", g.Readers())
	}
	if r := g.Reader(3); r.Admitted != 0 || r.Refused == 0 {
		t.Fatalf("third reader: %+v, want refused and never admitted", r)
	}
	for i, c := range []*tiered.Cache[string]{c1, c2, c1b} {
		if st := c.Stats().Stream; st.Throttles != 0 {
			t.Fatalf("cache %d of readers a and b throttled: %+v", i, st)
		}
	}
	st := g.Stats()
	if st.MaxReaders != readerlimit.DefaultLimit || st.Refused == 0 || st.Unknown != 0 {
		t.Fatalf("guard: %+v, want %d readers at most, refusals, no unknown iterator", st, readerlimit.DefaultLimit)
	}
	shards := g.Shards()
	if len(shards) != 1 {
		t.Fatalf("%d shards counted, want DynamoDB Local's one: %+v", len(shards), shards)
	}
	for k, s := range shards {
		if s.Admitted != st.Admitted || s.Refused != st.Refused || s.Readers > readerlimit.DefaultLimit {
			t.Fatalf("shard %s: %+v; guard %+v", k, s, st)
		}
	}
	t.Logf("guard: %+v; shards %+v", st, shards)
}

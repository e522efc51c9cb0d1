package tieredotel_test

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	tieredotel "github.com/tieredcache/tieredcache/otel"
	"github.com/tieredcache/tieredcache/tiered"
)

// collect reads every metric of the reader.
func collect(t testing.TB, r *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != tieredotel.ScopeName {
			t.Errorf("scope %q; want %q", sm.Scope.Name, tieredotel.ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// value is the data point of m whose attributes include every one of want
// (an int or a float, as a float64), and whether there is exactly one.
func value(m metricdata.Metrics, want ...attribute.KeyValue) (float64, bool) {
	var got []float64
	match := func(set attribute.Set) bool {
		for _, kv := range want {
			if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
				return false
			}
		}
		return true
	}
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			if match(p.Attributes) {
				got = append(got, float64(p.Value))
			}
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			if match(p.Attributes) {
				got = append(got, float64(p.Value))
			}
		}
	case metricdata.Gauge[float64]:
		for _, p := range d.DataPoints {
			if match(p.Attributes) {
				got = append(got, p.Value)
			}
		}
	}
	if len(got) != 1 {
		return 0, false
	}
	return got[0], true
}

func wantValue(t *testing.T, ms map[string]metricdata.Metrics, name string, want float64, attrs ...attribute.KeyValue) {
	t.Helper()
	m, ok := ms[name]
	if !ok {
		t.Errorf("%s: not exported", name)
		return
	}
	if got, ok := value(m, attrs...); !ok || got != want {
		t.Errorf("%s%v = %v (found: %v); want %v", name, attrs, got, ok, want)
	}
}

// exported maps every leaf field of tiered.Stats to the metric that exports
// it. TestEveryStatsFieldIsExported fails when Stats gains a field this
// table (and so Register) does not cover.
var exported = map[string]string{
	"L1.Hits": "tieredcache.hits", "L1.Misses": "tieredcache.misses", "L1.Bypassed": "tieredcache.l1.bypassed",
	"L1.Sets": "tieredcache.l1.sets", "L1.SetsDropped": "tieredcache.l1.sets", "L1.SetsRejected": "tieredcache.l1.sets",
	"L1.SetsFenced": "tieredcache.l1.sets", "L1.Evictions": "tieredcache.l1.evictions", "L1.Expirations": "tieredcache.l1.expirations",
	"L1.BytesUsed": "tieredcache.l1.usage", "L1.MaxBytes": "tieredcache.l1.limit", "L1.Items": "tieredcache.l1.items",
	"L2.Hits": "tieredcache.hits", "L2.Misses": "tieredcache.misses", "L2.Corrupt": "tieredcache.l2.corrupt",
	"L2.TooLarge": "tieredcache.l2.too_large", "L2.Calls": "tieredcache.dynamodb.calls", "L2.Errors": "tieredcache.dynamodb.errors",
	"L2.Throttles": "tieredcache.dynamodb.throttles", "L2.Timeouts": "tieredcache.dynamodb.timeouts", "L2.UnprocessedRetries": "tieredcache.l2.unprocessed_retries",
	"L2.ConditionFailures": "tieredcache.l2.condition_failures", "L2.Repairs": "tieredcache.l2.repairs",
	"L2.ByOp":     "tieredcache.dynamodb.calls",
	"Loads.Calls": "tieredcache.loads", "Loads.Errors": "tieredcache.load.errors", "Loads.Panics": "tieredcache.load.panics",
	"Loads.Batches": "tieredcache.load.batches", "Loads.BatchKeys": "tieredcache.load.batch_keys", "Loads.Joined": "tieredcache.load.joined",
	"Loads.StaleFillsDropped": "tieredcache.load.stale_fills_dropped", "Loads.StaleServed": "tieredcache.load.stale_served",
	"Loads.Refetches": "tieredcache.load.refetches",
	"Leases.Acquired": "tieredcache.lease.acquired", "Leases.Waits": "tieredcache.lease.waits", "Leases.Timeouts": "tieredcache.lease.timeouts",
	"Refresh.Started": "tieredcache.refresh.started", "Refresh.FromL2": "tieredcache.refresh.from_l2", "Refresh.Errors": "tieredcache.refresh.errors",
	"Writes.Calls": "tieredcache.writes", "Writes.Errors": "tieredcache.write.errors",
	"Pending.Now": "tieredcache.pending.current", "Pending.Added": "tieredcache.pending.events", "Pending.Retries": "tieredcache.pending.events",
	"Pending.Landed": "tieredcache.pending.events", "Pending.Superseded": "tieredcache.pending.events", "Pending.Expired": "tieredcache.pending.events",
	"Pending.Dropped": "tieredcache.pending.events", "Pending.Abandoned": "tieredcache.pending.events",
	"Breaker.State": "tieredcache.breaker.state", "Breaker.Opens": "tieredcache.breaker.opens",
	"Stream.Degraded": "tieredcache.stream.degraded", "Stream.DegradedEpisodes": "tieredcache.stream.degraded_episodes",
	"Stream.Trusted": "tieredcache.stream.trusted", "Stream.Lag": "tieredcache.stream.lag", "Stream.Shards": "tieredcache.stream.shards",
	"Stream.ShardsCompleted": "tieredcache.stream.shards_ended", "Stream.ShardsLost": "tieredcache.stream.shards_ended",
	"Stream.Records": "tieredcache.stream.records", "Stream.Changes": "tieredcache.stream.changes",
	"Stream.Invalidations": "tieredcache.invalidations", "Stream.Replacements": "tieredcache.invalidations",
	"Stream.Flushes": "tieredcache.flushes", "Stream.Errors": "tieredcache.stream.errors", "Stream.Throttles": "tieredcache.stream.throttles",
	"Stream.IteratorsRenewed": "tieredcache.stream.iterators_renewed", "Stream.Quirks": "tieredcache.stream.quirks",
	"Stream.ReaderLimitHits": "tieredcache.stream.reader_limit_hits", "Stream.ReaderLimited": "tieredcache.stream.reader_limited",
	"Stream.RecordLag": "tieredcache.stream.record_lag", "Stream.RecordLagMax": "tieredcache.stream.record_lag",
	"Stream.RecordLagMean": "tieredcache.stream.record_lag",
}

// notExported are the Stats fields that are not measurements: texts, and
// Stream.Enabled, which decides whether the stream metrics are observed.
var notExported = map[string]bool{"Stream.StreamArn": true, "Stream.LastError": true, "Stream.Enabled": true}

func leafFields(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == t.PkgPath() {
			out = append(out, leafFields(f.Type, prefix+f.Name+".")...)
			continue
		}
		out = append(out, prefix+f.Name)
	}
	return out
}

// TestEveryStatsFieldIsExported: every field of tiered.Stats is exported
// by a metric that a collection on a real Cache (with a stream consumer)
// reports.
func TestEveryStatsFieldIsExported(t *testing.T) {
	c := newCache(t, nil, nil)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	unregister, err := tieredotel.Register(c, mp)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unregister() }()
	ms := collect(t, reader)
	for _, f := range leafFields(reflect.TypeFor[tiered.Stats](), "") {
		if notExported[f] {
			continue
		}
		name, ok := exported[f]
		if !ok {
			t.Errorf("Stats.%s: no metric exports it (add it to Register and to this table)", f)
			continue
		}
		m, ok := ms[name]
		if !ok {
			t.Errorf("Stats.%s: metric %s not reported", f, name)
			continue
		}
		if m.Unit == "" || m.Description == "" {
			t.Errorf("%s: unit %q, description %q; want both", name, m.Unit, m.Description)
		}
	}
}

// throttleGetItem fails every GetItem attempt with a ThrottlingException
// while on is set: an SDK middleware, as a throttled table would answer.
func throttleGetItem(on *atomic.Bool) func(*dynamodb.Options) {
	return func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("test.throttle",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					if on.Load() && middleware.GetOperationName(ctx) == "GetItem" {
						return middleware.FinalizeOutput{}, middleware.Metadata{}, &smithy.GenericAPIError{Code: "ThrottlingException", Message: "injected"}
					}
					return next.HandleFinalize(ctx, in)
				}), middleware.After)
		})
	}
}

// TestRegisterReportsStats drives a real Cache on DynamoDB Local (misses,
// hits, writes, a throttled read) and checks the collected values against
// the cache's own Stats, then that unregistering stops the reports.
func TestRegisterReportsStats(t *testing.T) {
	var throttled atomic.Bool
	c := newCache(t, func(o *tiered.Options[string]) {
		o.BreakerFailures = 1000 // the throttled reads below must not open it
	}, nil, throttleGetItem(&throttled))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	unregister, err := tieredotel.Register(c, mp, tieredotel.WithAttributes(attribute.String("cache", "users")))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	load := func(ctx context.Context, key string) (string, error) { return "v-" + key, nil }
	for _, k := range []string{"a", "b", "c"} {
		if _, err := c.GetOrLoad(ctx, k, load); err != nil { // misses: L2 read, lease, load, fill
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "L1 to hold a", func() bool { _, err := c.Get(ctx, "a"); return err == nil })
	for range 5 {
		if _, err := c.GetOrLoad(ctx, "a", load); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Set(ctx, "d", "x"); err != nil {
		t.Fatal(err)
	}
	throttled.Store(true)
	if _, err := c.Get(ctx, "never"); err == nil || errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get under throttling = %v; want a DynamoDB error", err)
	}
	throttled.Store(false)
	// The stream consumer may still apply the writes' own records (dropping
	// entries: no effect on the counters compared below).
	st := c.Stats()
	ms := collect(t, reader)
	cache := attribute.String("cache", "users")
	wantValue(t, ms, "tieredcache.hits", float64(st.L1.Hits), cache, attribute.String("tier", "l1"))
	wantValue(t, ms, "tieredcache.hits", float64(st.L2.Hits), cache, attribute.String("tier", "l2"))
	wantValue(t, ms, "tieredcache.misses", float64(st.L2.Misses), cache, attribute.String("tier", "l2"))
	wantValue(t, ms, "tieredcache.loads", 3, cache)
	wantValue(t, ms, "tieredcache.writes", 1, cache)
	wantValue(t, ms, "tieredcache.lease.acquired", float64(st.Leases.Acquired), cache)
	wantValue(t, ms, "tieredcache.breaker.state", 1, cache, attribute.String("state", "closed"))
	wantValue(t, ms, "tieredcache.breaker.state", 0, cache, attribute.String("state", "open"))
	wantValue(t, ms, "tieredcache.l1.limit", float64(st.L1.MaxBytes), cache)
	if st.L1.Hits < 5 || st.Leases.Acquired != 3 {
		t.Errorf("Stats: L1 hits %d, leases %d; want >= 5 and 3", st.L1.Hits, st.Leases.Acquired)
	}
	var sum float64
	for op, o := range st.L2.ByOp {
		opAttr := attribute.String("operation", op)
		wantValue(t, ms, "tieredcache.dynamodb.calls", float64(o.Calls), cache, opAttr)
		wantValue(t, ms, "tieredcache.dynamodb.errors", float64(o.Errors), cache, opAttr)
		wantValue(t, ms, "tieredcache.dynamodb.throttles", float64(o.Throttles), cache, opAttr)
		sum += float64(o.Calls)
	}
	if sum != float64(st.L2.Calls) {
		t.Errorf("calls by operation sum to %v; Stats.L2.Calls = %d", sum, st.L2.Calls)
	}
	if g := st.L2.ByOp["GetItem"]; g.Errors != 1 || g.Throttles != 1 {
		t.Errorf("ByOp[GetItem] = %+v; want the one throttled Get", g)
	}
	if u := st.L2.ByOp["UpdateItem"]; u.Calls < 7 { // 3 leases, 3 fills, 1 Set
		t.Errorf("ByOp[UpdateItem] = %+v; want at least 7 calls", u)
	}
	if !st.Stream.Enabled {
		t.Fatal("the cache has no stream consumer")
	}
	if _, ok := ms["tieredcache.stream.lag"]; !ok {
		t.Error("tieredcache.stream.lag not reported with a stream consumer")
	}

	if err := unregister(); err != nil {
		t.Fatal(err)
	}
	if ms := collect(t, reader); len(ms) != 0 {
		t.Errorf("after unregister: %d metrics reported; want none", len(ms))
	}
}

// TestStreamMetricsOnlyWithAConsumer: without a stream consumer the stream
// instruments report nothing (rather than zeros that would read as healthy).
func TestStreamMetricsOnlyWithAConsumer(t *testing.T) {
	c := newCache(t, func(o *tiered.Options[string]) { o.DisableInvalidation = true }, nil)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	if _, err := tieredotel.Register(c, mp); err != nil {
		t.Fatal(err)
	}
	ms := collect(t, reader)
	for name := range ms {
		if m := ms[name]; name == "tieredcache.stream.lag" || name == "tieredcache.stream.degraded" || name == "tieredcache.flushes" {
			t.Errorf("%s reported without a stream consumer: %+v", name, m.Data)
		}
	}
	if _, ok := ms["tieredcache.hits"]; !ok {
		t.Error("tieredcache.hits not reported")
	}
}

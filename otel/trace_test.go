package tieredotel_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	tieredotel "github.com/tieredcache/tieredcache/otel"
	"github.com/tieredcache/tieredcache/tiered"
)

type traced struct {
	rec    *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tracer trace.Tracer
	opts   []tieredotel.Option
}

func newTraced(t *testing.T) *traced {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	return &traced{rec: rec, reader: reader, tracer: tp.Tracer("test"),
		opts: []tieredotel.Option{tieredotel.WithTracerProvider(tp), tieredotel.WithMeterProvider(mp)}}
}

// childrenOf returns the names of the ended spans whose parent is parent.
func (tr *traced) childrenOf(parent trace.SpanContext) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tr.rec.Ended() {
		if s.Parent().SpanID() == parent.SpanID() && s.SpanContext().TraceID() == parent.TraceID() {
			out = append(out, s)
		}
	}
	return out
}

// histCount is the number of values recorded in histogram name with attrs.
func histCount(t *testing.T, r *sdkmetric.ManualReader, name string, attrs ...attribute.KeyValue) uint64 {
	t.Helper()
	m, ok := collect(t, r)[name]
	if !ok {
		return 0
	}
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s is a %T; want a float64 histogram", name, m.Data)
	}
	if m.Unit != "s" {
		t.Errorf("%s unit %q; want s", name, m.Unit)
	}
	var n uint64
	for _, p := range h.DataPoints {
		match := true
		for _, kv := range attrs {
			if v, ok := p.Attributes.Value(kv.Key); !ok || v != kv.Value {
				match = false
			}
		}
		if match {
			n += p.Count
		}
	}
	return n
}

// TestMissIsTracedAndHitIsNot: a GetOrLoad miss under a caller's span makes
// the L2 read, the lease, the loader call and the fill children of that span,
// and records their durations; an L1 hit makes no span and records nothing.
func TestMissIsTracedAndHitIsNot(t *testing.T) {
	tr := newTraced(t)
	c := newCache(t, func(o *tiered.Options[string]) { o.DisableInvalidation = true }, tr.opts)
	ctx := testContext(t)
	loader := tieredotel.InstrumentLoader(func(ctx context.Context, key string) (string, error) {
		tiered.SetTTL(ctx, time.Minute) // the wrapper keeps the Cache's ctx values
		return "v", nil
	}, tr.opts...)

	const secretKey = "user-secret-42" // keys never go into spans
	rctx, req := tr.tracer.Start(ctx, "request")
	if v, err := c.GetOrLoad(rctx, secretKey, loader); err != nil || v != "v" {
		t.Fatalf("GetOrLoad = %q, %v", v, err)
	}
	req.End()
	names := map[string]int{}
	for _, s := range tr.childrenOf(req.SpanContext()) {
		names[s.Name()]++
		if s.Status().Code == codes.Error {
			t.Errorf("span %s has status %v", s.Name(), s.Status())
		}
	}
	for _, s := range tr.rec.Ended() {
		for _, kv := range s.Attributes() {
			if strings.Contains(kv.Value.String(), secretKey) {
				t.Errorf("span %s attribute %s holds the key", s.Name(), kv.Key)
			}
		}
	}
	if names["DynamoDB.GetItem"] != 1 || names["tieredcache.load"] != 1 || names["DynamoDB.UpdateItem"] < 2 {
		t.Fatalf("children of the miss's span: %v; want one GetItem, one load, an UpdateItem for the lease and one for the fill", names)
	}
	getItems := histCount(t, tr.reader, "tieredcache.dynamodb.duration", attribute.String("operation", "GetItem"))
	loads := histCount(t, tr.reader, "tieredcache.loader.duration", attribute.String("outcome", "ok"), attribute.String("kind", "single"))
	if getItems < 1 || loads != 1 {
		t.Fatalf("durations recorded: %d GetItem, %d loads; want >= 1 and 1", getItems, loads)
	}

	// Wait until the entry is in L1 (Ristretto applies new keys
	// asynchronously); reads until then may go to L2, outside any span.
	waitFor(t, 30*time.Second, "an L1 hit", func() bool {
		before := c.Stats().L1.Hits
		_, _ = c.Get(ctx, secretKey)
		return c.Stats().L1.Hits > before
	})
	ended := len(tr.rec.Ended())
	dynamo := histCount(t, tr.reader, "tieredcache.dynamodb.duration")
	hctx, hit := tr.tracer.Start(ctx, "hit")
	before := c.Stats().L1.Hits
	if v, err := c.GetOrLoad(hctx, secretKey, loader); err != nil || v != "v" {
		t.Fatalf("GetOrLoad (hit) = %q, %v", v, err)
	}
	hit.End()
	if c.Stats().L1.Hits != before+1 {
		t.Fatal("the second GetOrLoad was not an L1 hit")
	}
	if kids := tr.childrenOf(hit.SpanContext()); len(kids) != 0 || len(tr.rec.Ended()) != ended+1 {
		t.Errorf("an L1 hit made %d child spans, %d spans in all; want none but the caller's own", len(kids), len(tr.rec.Ended())-ended)
	}
	if d := histCount(t, tr.reader, "tieredcache.dynamodb.duration"); d != dynamo {
		t.Errorf("an L1 hit recorded %d DynamoDB durations", d-dynamo)
	}
	if l := histCount(t, tr.reader, "tieredcache.loader.duration"); l != 1 {
		t.Errorf("loader durations %d after the hit; want still 1", l)
	}
}

// TestLoaderOutcomes: a loader's error marks its span and is counted as
// outcome=error; ErrNotFound is an answer (outcome=not_found, no error
// status); a panic ends the span with an error status and still reaches the
// Cache, which returns ErrLoaderPanic; a batch loader gets its own span.
func TestLoaderOutcomes(t *testing.T) {
	tr := newTraced(t)
	c := newCache(t, func(o *tiered.Options[string]) { o.DisableInvalidation = true }, tr.opts)
	ctx := testContext(t)
	boom := errors.New("source down")
	cases := []struct {
		key     string
		fn      tiered.Loader[string]
		outcome string
		status  codes.Code
		wantErr error
	}{
		{"err", func(context.Context, string) (string, error) { return "", boom }, "error", codes.Error, boom},
		{"none", func(context.Context, string) (string, error) { return "", tiered.ErrNotFound }, "not_found", codes.Unset, tiered.ErrNotFound},
		{"panic", func(context.Context, string) (string, error) { panic("bad loader") }, "panic", codes.Error, tiered.ErrLoaderPanic},
	}
	for _, tc := range cases {
		rctx, req := tr.tracer.Start(ctx, "request")
		_, err := c.GetOrLoad(rctx, tc.key, tieredotel.InstrumentLoader(tc.fn, tr.opts...))
		req.End()
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: GetOrLoad error %v; want %v", tc.key, err, tc.wantErr)
		}
		var load sdktrace.ReadOnlySpan
		for _, s := range tr.childrenOf(req.SpanContext()) {
			if s.Name() == "tieredcache.load" {
				load = s
			}
		}
		if load == nil {
			t.Errorf("%s: no tieredcache.load span under the caller's span", tc.key)
			continue
		}
		if load.Status().Code != tc.status {
			t.Errorf("%s: load span status %v; want %v", tc.key, load.Status().Code, tc.status)
		}
		if n := histCount(t, tr.reader, "tieredcache.loader.duration", attribute.String("outcome", tc.outcome)); n != 1 {
			t.Errorf("%s: %d durations with outcome %s; want 1", tc.key, n, tc.outcome)
		}
	}

	batch := tieredotel.InstrumentBatchLoader(func(_ context.Context, keys []string) (map[string]string, error) {
		out := map[string]string{}
		for _, k := range keys {
			out[k] = "v"
		}
		return out, nil
	}, tr.opts...)
	rctx, req := tr.tracer.Start(ctx, "request")
	if got, err := c.GetMany(rctx, []string{"x", "y", "z"}, batch); err != nil || len(got) != 3 {
		t.Fatalf("GetMany = %v, %v", got, err)
	}
	req.End()
	var found bool
	for _, s := range tr.childrenOf(req.SpanContext()) {
		if s.Name() == "tieredcache.load_batch" {
			found = true
			for _, kv := range s.Attributes() {
				if kv.Key == "tieredcache.loader.keys" && kv.Value.AsInt64() != 3 {
					t.Errorf("tieredcache.loader.keys = %d; want 3", kv.Value.AsInt64())
				}
			}
		}
	}
	if !found {
		t.Error("no tieredcache.load_batch span under the caller's span")
	}
	if n := histCount(t, tr.reader, "tieredcache.loader.duration", attribute.String("kind", "batch")); n != 1 {
		t.Errorf("%d batch loader durations; want 1", n)
	}
}

// TestMissSpanParentsItsCalls: with TraceMisses as OnMiss, a miss is one
// span under the caller's, and the miss's DynamoDB and loader calls are its
// children.
func TestMissSpanParentsItsCalls(t *testing.T) {
	tr := newTraced(t)
	c := newCache(t, func(o *tiered.Options[string]) {
		o.DisableInvalidation = true
		o.OnMiss = tieredotel.TraceMisses(tr.opts...)
	}, tr.opts)
	ctx := testContext(t)
	loader := tieredotel.InstrumentLoader(func(context.Context, string) (string, error) { return "v", nil }, tr.opts...)
	rctx, req := tr.tracer.Start(ctx, "request")
	if v, err := c.GetOrLoad(rctx, "k", loader); err != nil || v != "v" {
		t.Fatalf("GetOrLoad = %q, %v", v, err)
	}
	req.End()
	kids := tr.childrenOf(req.SpanContext())
	if len(kids) != 1 || kids[0].Name() != "tieredcache.miss" {
		names := []string{}
		for _, k := range kids {
			names = append(names, k.Name())
		}
		t.Fatalf("children of the request: %v; want one tieredcache.miss", names)
	}
	names := map[string]int{}
	for _, s := range tr.childrenOf(kids[0].SpanContext()) {
		names[s.Name()]++
	}
	if names["DynamoDB.GetItem"] != 1 || names["tieredcache.load"] != 1 || names["DynamoDB.UpdateItem"] < 2 {
		t.Fatalf("children of the miss: %v; want its GetItem, its load, the lease's and the fill's UpdateItem", names)
	}
}

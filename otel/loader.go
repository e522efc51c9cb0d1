package tieredotel

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tieredcache/tieredcache/tiered"
)

// loaderObs is what a wrapped loader records with.
type loaderObs struct {
	tracer trace.Tracer
	hist   metric.Float64Histogram
	attrs  []attribute.KeyValue
}

func newLoaderObs(opts []Option) loaderObs {
	cfg := newConfig(opts)
	hist, err := cfg.mp.Meter(ScopeName).Float64Histogram("tieredcache.loader.duration",
		metric.WithUnit("s"), metric.WithDescription("Duration of loader calls."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		hist = nil
	}
	return loaderObs{tracer: cfg.tp.Tracer(ScopeName), hist: hist, attrs: cfg.attrs}
}

// call runs fn in a span named name and records its duration with the
// attributes kind and outcome (ok, not_found, error, panic). A panic (or
// runtime.Goexit) goes on unchanged after the span ends: the Cache turns it
// into ErrLoaderPanic (ErrLoaderGoexit).
func (lo loaderObs) call(ctx context.Context, name, kind string, extra []attribute.KeyValue, fn func(context.Context) error) (err error) {
	attrs := append(append(append(make([]attribute.KeyValue, 0, len(lo.attrs)+len(extra)+1), lo.attrs...), extra...), attribute.String("tieredcache.loader.kind", kind))
	ctx, span := lo.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
	start := time.Now()
	outcome := "panic"
	defer func() {
		if outcome == "panic" {
			span.SetStatus(codes.Error, "loader panicked or called runtime.Goexit")
		}
		span.End()
		if lo.hist != nil {
			lo.hist.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(append(append([]attribute.KeyValue{}, lo.attrs...),
				attribute.String("kind", kind), attribute.String("outcome", outcome))...))
		}
	}()
	err = fn(ctx)
	switch {
	case err == nil:
		outcome = "ok"
	case errors.Is(err, tiered.ErrNotFound):
		outcome = "not_found" // an answer, cached as such
	default:
		outcome = "error"
		span.SetStatus(codes.Error, "loader error")
	}
	return err
}

// InstrumentLoader wraps loader so that each call makes a span named
// "tieredcache.load" (a child of the span in the ctx the Cache gives it, which
// keeps the caller's values: see the package doc) and records its duration in
// the histogram tieredcache.loader.duration (seconds; attributes kind=single
// and outcome). A Cache calls a loader only on a miss or a refresh, never on
// an L1 hit. The ctx passed on is the one given, plus the span: SetTTL works
// as before. Error messages and keys are not recorded.
func InstrumentLoader[V any](loader tiered.Loader[V], opts ...Option) tiered.Loader[V] {
	if loader == nil {
		return nil // the Cache's ErrNilLoader, as without the wrapper
	}
	lo := newLoaderObs(opts)
	return func(ctx context.Context, key string) (v V, err error) {
		err = lo.call(ctx, "tieredcache.load", "single", nil, func(ctx context.Context) error {
			v, err = loader(ctx, key)
			return err
		})
		return v, err
	}
}

// InstrumentBatchLoader is InstrumentLoader for GetMany's BatchLoader: span
// "tieredcache.load_batch" with the attribute tieredcache.loader.keys (the
// number of keys asked), histogram attribute kind=batch.
func InstrumentBatchLoader[V any](loader tiered.BatchLoader[V], opts ...Option) tiered.BatchLoader[V] {
	if loader == nil {
		return nil
	}
	lo := newLoaderObs(opts)
	return func(ctx context.Context, keys []string) (m map[string]V, err error) {
		err = lo.call(ctx, "tieredcache.load_batch", "batch", []attribute.KeyValue{attribute.Int("tieredcache.loader.keys", len(keys))}, func(ctx context.Context) error {
			m, err = loader(ctx, keys)
			return err
		})
		return m, err
	}
}

package tieredotel

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tieredcache/tieredcache/tiered"
)

// TraceMisses returns a tiered.Options.OnMiss hook that makes one span per
// fill, named "tieredcache.miss" (attributes: tieredcache.miss.op = get, load
// or refresh; tieredcache.miss.keys). The fill's DynamoDB calls (with
// InstrumentDynamoDB on the client) and loader calls (InstrumentLoader) run on
// its context, so their spans are its children: one tree per miss, under the
// caller's span when there is one. Nothing happens on an L1 hit: the Cache
// calls the hook only when it fills.
func TraceMisses(opts ...Option) func(context.Context, tiered.MissInfo) (context.Context, func(error)) {
	cfg := newConfig(opts)
	tracer := cfg.tp.Tracer(ScopeName)
	return func(ctx context.Context, m tiered.MissInfo) (context.Context, func(error)) {
		attrs := append(append(make([]attribute.KeyValue, 0, len(cfg.attrs)+2), cfg.attrs...),
			attribute.String("tieredcache.miss.op", m.Op), attribute.Int("tieredcache.miss.keys", m.Keys))
		ctx, span := tracer.Start(ctx, "tieredcache.miss", trace.WithAttributes(attrs...))
		return ctx, func(err error) {
			if err != nil && !errors.Is(err, tiered.ErrNotFound) {
				span.SetStatus(codes.Error, "miss failed") // no error text: it may name a key
			}
			span.End()
		}
	}
}

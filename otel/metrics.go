package tieredotel

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tieredcache/tieredcache/tiered"
)

// StatsSource is what Register reads: any *tiered.Cache[V] is one.
type StatsSource interface {
	Stats() tiered.Stats
}

type kind int

const (
	counter kind = iota // monotonic count: Int64ObservableCounter
	updown              // a quantity that goes up and down: Int64ObservableUpDownCounter
	gauge               // a state or a limit: Int64ObservableGauge
	seconds             // a duration now: Float64ObservableGauge in seconds
)

// series is one attribute set of an instrument and how to read it.
type series struct {
	attrs []attribute.KeyValue
	int   func(*tiered.Stats) int64
	float func(*tiered.Stats) float64
}

// inst is one instrument. stream: observed only with a stream consumer
// (Stats.Stream.Enabled), whose fields are all zero otherwise.
type inst struct {
	kind             kind
	name, unit, desc string
	stream           bool
	series           []series
}

func u(f func(*tiered.Stats) uint64) series {
	return series{int: func(s *tiered.Stats) int64 { return int64(min(f(s), 1<<63-1)) }}
}

func i(f func(*tiered.Stats) int64) series { return series{int: f} }

func b(f func(*tiered.Stats) bool) series {
	return series{int: func(s *tiered.Stats) int64 {
		if f(s) {
			return 1
		}
		return 0
	}}
}

func with(s series, kv ...attribute.KeyValue) series { s.attrs = kv; return s }

var (
	tierL1 = attribute.String("tier", "l1")
	tierL2 = attribute.String("tier", "l2")
)

// breakerStates are the values of BreakerStats.State.
var breakerStates = []string{"closed", "half-open", "open"}

// instruments lists every metric Register exports: each field of tiered.Stats
// but the strings Stream.StreamArn and Stream.LastError (not measurements;
// see Health and logs) appears in exactly one of them. DynamoDB calls by
// operation are added in Register (their attribute sets come from Stats).
func instruments() []inst {
	breaker := make([]series, 0, len(breakerStates))
	for _, st := range breakerStates {
		breaker = append(breaker, with(b(func(s *tiered.Stats) bool { return s.Breaker.State == st }), attribute.String("state", st)))
	}
	return []inst{
		// Hits and misses per tier.
		{counter, "tieredcache.hits", "{lookup}", "Reader lookups answered by a tier (L1: Get, GetOrLoad, GetMany; L2: L1 misses answered by an L2 item).", false, []series{
			with(u(func(s *tiered.Stats) uint64 { return s.L1.Hits }), tierL1),
			with(u(func(s *tiered.Stats) uint64 { return s.L2.Hits }), tierL2),
		}},
		{counter, "tieredcache.misses", "{lookup}", "Lookups a tier did not answer (L1: bypassed entries included; L2: absent, deleted, expired or leased).", false, []series{
			with(u(func(s *tiered.Stats) uint64 { return s.L1.Misses }), tierL1),
			with(u(func(s *tiered.Stats) uint64 { return s.L2.Misses }), tierL2),
		}},
		// L1.
		{counter, "tieredcache.l1.bypassed", "{entry}", "L1 entries found but not served: older than T/2 while trust had lapsed (also in misses).", false, []series{u(func(s *tiered.Stats) uint64 { return s.L1.Bypassed })}},
		{counter, "tieredcache.l1.sets", "{entry}", "L1 stores, by result: stored, dropped (buffer full), rejected (admission or size), fenced (the key changed while the fill was in flight).", false, []series{
			with(u(func(s *tiered.Stats) uint64 { return s.L1.Sets }), attribute.String("result", "stored")),
			with(u(func(s *tiered.Stats) uint64 { return s.L1.SetsDropped }), attribute.String("result", "dropped")),
			with(u(func(s *tiered.Stats) uint64 { return s.L1.SetsRejected }), attribute.String("result", "rejected")),
			with(u(func(s *tiered.Stats) uint64 { return s.L1.SetsFenced }), attribute.String("result", "fenced")),
		}},
		{counter, "tieredcache.l1.evictions", "{entry}", "L1 entries evicted to make room.", false, []series{u(func(s *tiered.Stats) uint64 { return s.L1.Evictions })}},
		{counter, "tieredcache.l1.expirations", "{entry}", "Expired L1 entries removed.", false, []series{u(func(s *tiered.Stats) uint64 { return s.L1.Expirations })}},
		{updown, "tieredcache.l1.usage", "By", "L1 budget in use: key + encoded value + per-entry overhead.", false, []series{i(func(s *tiered.Stats) int64 { return s.L1.BytesUsed })}},
		{gauge, "tieredcache.l1.limit", "By", "L1 budget (Options.L1MaxBytes).", false, []series{i(func(s *tiered.Stats) int64 { return s.L1.MaxBytes })}},
		{updown, "tieredcache.l1.items", "{entry}", "Live L1 entries.", false, []series{i(func(s *tiered.Stats) int64 { return s.L1.Items })}},
		// L2.
		{counter, "tieredcache.l2.corrupt", "{item}", "Items a lookup could not use (malformed or undecodable), once per key per lookup.", false, []series{u(func(s *tiered.Stats) uint64 { return s.L2.Corrupt })}},
		{counter, "tieredcache.l2.too_large", "{value}", "Loaded values too large for an item, kept in L1 only.", false, []series{u(func(s *tiered.Stats) uint64 { return s.L2.TooLarge })}},
		{counter, "tieredcache.dynamodb.timeouts", "{call}", "DynamoDB calls that ran out of CallTimeout (ErrTimeout; also in tieredcache.dynamodb.errors).", false, []series{u(func(s *tiered.Stats) uint64 { return s.L2.Timeouts })}},
		{counter, "tieredcache.l2.unprocessed_retries", "{call}", "BatchGetItem calls made only to retry UnprocessedKeys (also in tieredcache.dynamodb.calls).", false, []series{u(func(s *tiered.Stats) uint64 { return s.L2.UnprocessedRetries })}},
		{counter, "tieredcache.l2.condition_failures", "{write}", "Conditional writes (fills, leases, pending tombstones) that did not land: the item had changed.", false, []series{u(func(s *tiered.Stats) uint64 { return s.L2.ConditionFailures })}},
		{counter, "tieredcache.l2.repairs", "{item}", "Corrupt or foreign items a write replaced.", false, []series{u(func(s *tiered.Stats) uint64 { return s.L2.Repairs })}},
		// Loads.
		{counter, "tieredcache.loads", "{call}", "Loader calls (a BatchLoader call once).", false, []series{u(func(s *tiered.Stats) uint64 { return s.Loads.Calls })}},
		{counter, "tieredcache.load.errors", "{call}", "Loader calls that failed (nothing cached), panics included.", false, []series{u(func(s *tiered.Stats) uint64 { return s.Loads.Errors })}},
		{counter, "tieredcache.load.panics", "{call}", "Loader calls that panicked (also in load.errors).", false, []series{u(func(s *tiered.Stats) uint64 { return s.Loads.Panics })}},
		{counter, "tieredcache.load.batches", "{call}", "BatchLoader calls (also in loads).", false, []series{u(func(s *tiered.Stats) uint64 { return s.Loads.Batches })}},
		{counter, "tieredcache.load.batch_keys", "{key}", "Keys passed to BatchLoader calls.", false, []series{u(func(s *tiered.Stats) uint64 { return s.Loads.BatchKeys })}},
		{counter, "tieredcache.load.joined", "{key}", "Keys taken from a load already in flight instead of loading them again.", false, []series{u(func(s *tiered.Stats) uint64 { return s.Loads.Joined })}},
		{counter, "tieredcache.load.stale_fills_dropped", "{load}", "Loads not stored because the key was written or deleted while they ran.", false, []series{u(func(s *tiered.Stats) uint64 { return s.Loads.StaleFillsDropped })}},
		{counter, "tieredcache.load.stale_served", "{lookup}", "Values served with ErrStale after a loader error (StaleIfError).", false, []series{u(func(s *tiered.Stats) uint64 { return s.Loads.StaleServed })}},
		{counter, "tieredcache.load.refetches", "{flight}", "Flights that read L2 again because their read was older than T/2 when they ended.", false, []series{u(func(s *tiered.Stats) uint64 { return s.Loads.Refetches })}},
		// Leases.
		{counter, "tieredcache.lease.acquired", "{lease}", "Cross-node fill leases this node took.", false, []series{u(func(s *tiered.Stats) uint64 { return s.Leases.Acquired })}},
		{counter, "tieredcache.lease.waits", "{wait}", "Times this node waited on another node's lease.", false, []series{u(func(s *tiered.Stats) uint64 { return s.Leases.Waits })}},
		{counter, "tieredcache.lease.timeouts", "{wait}", "Lease waits that ran out (the loader was then called anyway).", false, []series{u(func(s *tiered.Stats) uint64 { return s.Leases.Timeouts })}},
		// Refresh-ahead.
		{counter, "tieredcache.refresh.started", "{refresh}", "Refresh-ahead reloads started.", false, []series{u(func(s *tiered.Stats) uint64 { return s.Refresh.Started })}},
		{counter, "tieredcache.refresh.from_l2", "{refresh}", "Refreshes answered by a newer L2 version.", false, []series{u(func(s *tiered.Stats) uint64 { return s.Refresh.FromL2 })}},
		{counter, "tieredcache.refresh.errors", "{refresh}", "Refreshes whose loader or write failed.", false, []series{u(func(s *tiered.Stats) uint64 { return s.Refresh.Errors })}},
		// Writes.
		{counter, "tieredcache.writes", "{call}", "Set, SetWithTTL and Delete calls.", false, []series{u(func(s *tiered.Stats) uint64 { return s.Writes.Calls })}},
		{counter, "tieredcache.write.errors", "{call}", "Set, SetWithTTL and Delete calls that returned an error.", false, []series{u(func(s *tiered.Stats) uint64 { return s.Writes.Errors })}},
		// Pending invalidations.
		{updown, "tieredcache.pending.current", "{invalidation}", "Failed invalidations pending retry now.", false, []series{u(func(s *tiered.Stats) uint64 { return s.Pending.Now })}},
		{counter, "tieredcache.pending.events", "{invalidation}", "Pending invalidations by event: added, retried (attempts), landed, superseded, expired, dropped (set full), abandoned (at Close).", false, []series{
			with(u(func(s *tiered.Stats) uint64 { return s.Pending.Added }), attribute.String("event", "added")),
			with(u(func(s *tiered.Stats) uint64 { return s.Pending.Retries }), attribute.String("event", "retried")),
			with(u(func(s *tiered.Stats) uint64 { return s.Pending.Landed }), attribute.String("event", "landed")),
			with(u(func(s *tiered.Stats) uint64 { return s.Pending.Superseded }), attribute.String("event", "superseded")),
			with(u(func(s *tiered.Stats) uint64 { return s.Pending.Expired }), attribute.String("event", "expired")),
			with(u(func(s *tiered.Stats) uint64 { return s.Pending.Dropped }), attribute.String("event", "dropped")),
			with(u(func(s *tiered.Stats) uint64 { return s.Pending.Abandoned }), attribute.String("event", "abandoned")),
		}},
		// Breaker.
		{gauge, "tieredcache.breaker.state", "{state}", "1 for the breaker's current state (closed, half-open, open), 0 for the others.", false, breaker},
		{counter, "tieredcache.breaker.opens", "{event}", "Times the breaker opened.", false, []series{u(func(s *tiered.Stats) uint64 { return s.Breaker.Opens })}},
		// Stream consumer: only with one.
		{gauge, "tieredcache.stream.degraded", "{state}", "1 while trust in L1 does not hold (only entries younger than T/2 are served).", true, []series{b(func(s *tiered.Stats) bool { return s.Stream.Degraded })}},
		{gauge, "tieredcache.stream.trusted", "{state}", "1 while trust was granted and not withdrawn (it may still have lapsed: see stream.degraded).", true, []series{b(func(s *tiered.Stats) bool { return s.Stream.Trusted })}},
		{counter, "tieredcache.stream.degraded_episodes", "{episode}", "Times trust in L1 was withdrawn.", true, []series{u(func(s *tiered.Stats) uint64 { return s.Stream.DegradedEpisodes })}},
		{seconds, "tieredcache.stream.lag", "s", "Largest time since a followed shard was last drained: every older change has been applied.", true, []series{{float: func(s *tiered.Stats) float64 { return s.Stream.Lag.Seconds() }}}},
		{seconds, "tieredcache.stream.record_lag", "s", "Age of stream records when applied (coarse: creation times are rounded): the last, the largest, the mean.", true, []series{
			{attrs: []attribute.KeyValue{attribute.String("stat", "last")}, float: func(s *tiered.Stats) float64 { return s.Stream.RecordLag.Seconds() }},
			{attrs: []attribute.KeyValue{attribute.String("stat", "max")}, float: func(s *tiered.Stats) float64 { return s.Stream.RecordLagMax.Seconds() }},
			{attrs: []attribute.KeyValue{attribute.String("stat", "mean")}, float: func(s *tiered.Stats) float64 { return s.Stream.RecordLagMean.Seconds() }},
		}},
		{updown, "tieredcache.stream.shards", "{shard}", "Shards read now.", true, []series{i(func(s *tiered.Stats) int64 { return int64(s.Stream.Shards) })}},
		{counter, "tieredcache.stream.shards_ended", "{shard}", "Shards no longer read: completed (read to their end) or lost (vanished first; each flushed L1).", true, []series{
			with(u(func(s *tiered.Stats) uint64 { return s.Stream.ShardsCompleted }), attribute.String("result", "completed")),
			with(u(func(s *tiered.Stats) uint64 { return s.Stream.ShardsLost }), attribute.String("result", "lost")),
		}},
		{counter, "tieredcache.stream.records", "{record}", "Stream records received.", true, []series{u(func(s *tiered.Stats) uint64 { return s.Stream.Records })}},
		{counter, "tieredcache.stream.changes", "{change}", "Key changes the records reported (every namespace).", true, []series{u(func(s *tiered.Stats) uint64 { return s.Stream.Changes })}},
		{counter, "tieredcache.invalidations", "{entry}", "L1 entries the stream dropped (action=dropped) or replaced in place (action=replaced, ReplaceOnChange).", true, []series{
			with(u(func(s *tiered.Stats) uint64 { return s.Stream.Invalidations }), attribute.String("action", "dropped")),
			with(u(func(s *tiered.Stats) uint64 { return s.Stream.Replacements }), attribute.String("action", "replaced")),
		}},
		{counter, "tieredcache.flushes", "{flush}", "Whole-L1 flushes: the consumer lost track of the stream.", true, []series{u(func(s *tiered.Stats) uint64 { return s.Stream.Flushes })}},
		{counter, "tieredcache.stream.errors", "{call}", "Failed DynamoDB Streams API calls, throttles included.", true, []series{u(func(s *tiered.Stats) uint64 { return s.Stream.Errors })}},
		{counter, "tieredcache.stream.throttles", "{call}", "Throttled DynamoDB Streams API calls.", true, []series{u(func(s *tiered.Stats) uint64 { return s.Stream.Throttles })}},
		{counter, "tieredcache.stream.iterators_renewed", "{iterator}", "Shard iterators replaced after expiry or rejection.", true, []series{u(func(s *tiered.Stats) uint64 { return s.Stream.IteratorsRenewed })}},
		{counter, "tieredcache.stream.reader_limit_hits", "{call}", "Stream reads refused with LimitExceededException: more than two readers of a shard (use fan-out).", true, []series{u(func(s *tiered.Stats) uint64 { return s.Stream.ReaderLimitHits })}},
		{gauge, "tieredcache.stream.reader_limited", "{state}", "1 while three or more reads were refused with LimitExceededException within the last minute.", true, []series{b(func(s *tiered.Stats) bool { return s.Stream.ReaderLimited })}},
		{counter, "tieredcache.stream.quirks", "{event}", "DynamoDB Local oddities worked around.", true, []series{u(func(s *tiered.Stats) uint64 { return s.Stream.Quirks })}},
	}
}

// registered is an instrument made, with its series' measurement options.
type registered struct {
	inst
	obs  metric.Observable
	opts []metric.MeasurementOption
}

// Register makes observable instruments on mp's meter for src's Stats: one
// Stats call per collection, in one callback; nothing is measured between
// collections, so the cache's hit path is untouched. The returned function
// unregisters the callback (the instruments stay, without measurements).
// Options: WithAttributes (WithMeterProvider and WithTracerProvider are
// ignored here).
//
// DynamoDB calls are reported per API operation (attribute operation:
// GetItem, BatchGetItem, UpdateItem, and any other once called) as
// tieredcache.dynamodb.calls, .errors and .throttles. Stream instruments are
// observed only when the cache has a stream consumer.
func Register(src StatsSource, mp metric.MeterProvider, opts ...Option) (unregister func() error, err error) {
	if src == nil || mp == nil {
		return nil, errors.New("tieredotel: Register needs a StatsSource and a MeterProvider")
	}
	cfg := newConfig(opts)
	meter := mp.Meter(ScopeName)
	defs := instruments()
	regs := make([]registered, 0, len(defs))
	all := make([]metric.Observable, 0, len(defs)+3)
	for _, d := range defs {
		var obs metric.Observable
		var err error
		switch d.kind {
		case counter:
			obs, err = meter.Int64ObservableCounter(d.name, metric.WithUnit(d.unit), metric.WithDescription(d.desc))
		case updown:
			obs, err = meter.Int64ObservableUpDownCounter(d.name, metric.WithUnit(d.unit), metric.WithDescription(d.desc))
		case gauge:
			obs, err = meter.Int64ObservableGauge(d.name, metric.WithUnit(d.unit), metric.WithDescription(d.desc))
		case seconds:
			obs, err = meter.Float64ObservableGauge(d.name, metric.WithUnit(d.unit), metric.WithDescription(d.desc))
		}
		if err != nil {
			return nil, fmt.Errorf("tieredotel: instrument %s: %w", d.name, err)
		}
		r := registered{inst: d, obs: obs}
		for _, s := range d.series {
			r.opts = append(r.opts, metric.WithAttributeSet(attribute.NewSet(append(append([]attribute.KeyValue{}, cfg.attrs...), s.attrs...)...)))
		}
		regs = append(regs, r)
		all = append(all, obs)
	}
	calls, err := meter.Int64ObservableCounter("tieredcache.dynamodb.calls", metric.WithUnit("{call}"),
		metric.WithDescription("DynamoDB API calls on the data path, by operation (each BatchGetItem page and UnprocessedKeys retry; not the SDK's retries inside a call)."))
	if err != nil {
		return nil, fmt.Errorf("tieredotel: %w", err)
	}
	errs, err := meter.Int64ObservableCounter("tieredcache.dynamodb.errors", metric.WithUnit("{call}"),
		metric.WithDescription("DynamoDB data-path calls that failed, by operation (throttles included, failed conditions not)."))
	if err != nil {
		return nil, fmt.Errorf("tieredotel: %w", err)
	}
	throttles, err := meter.Int64ObservableCounter("tieredcache.dynamodb.throttles", metric.WithUnit("{call}"),
		metric.WithDescription("DynamoDB data-path calls that were throttled, by operation."))
	if err != nil {
		return nil, fmt.Errorf("tieredotel: %w", err)
	}
	all = append(all, calls, errs, throttles)
	opAttrs := map[string]metric.MeasurementOption{} // per operation, made once
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := src.Stats()
		for _, r := range regs {
			if r.stream && !st.Stream.Enabled {
				continue
			}
			for k, s := range r.series {
				switch {
				case s.float != nil:
					o.ObserveFloat64(r.obs.(metric.Float64Observable), s.float(&st), r.opts[k])
				default:
					o.ObserveInt64(r.obs.(metric.Int64Observable), s.int(&st), r.opts[k])
				}
			}
		}
		ops := make([]string, 0, len(st.L2.ByOp))
		for op := range st.L2.ByOp {
			ops = append(ops, op)
		}
		sort.Strings(ops)
		for _, op := range ops {
			a, ok := opAttrs[op]
			if !ok { // callbacks are not run concurrently for one registration
				a = metric.WithAttributeSet(attribute.NewSet(append(append([]attribute.KeyValue{}, cfg.attrs...), attribute.String("operation", op))...))
				opAttrs[op] = a
			}
			c := st.L2.ByOp[op]
			o.ObserveInt64(calls, int64(min(c.Calls, 1<<63-1)), a)
			o.ObserveInt64(errs, int64(min(c.Errors, 1<<63-1)), a)
			o.ObserveInt64(throttles, int64(min(c.Throttles, 1<<63-1)), a)
		}
		return nil
	}, all...)
	if err != nil {
		return nil, fmt.Errorf("tieredotel: register callback: %w", err)
	}
	return reg.Unregister, nil
}

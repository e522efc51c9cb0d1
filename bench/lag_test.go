package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/tiered"
)

const (
	lagKeysPerLane = 8                // keys each lane cycles through
	lagWaitEvent   = 10 * time.Second // an eviction later than this counts as missed
)

// evictEvent is one OnInvalidate callback on an observing node.
type evictEvent struct {
	key  string
	node int // index into the observers
	at   time.Time
}

// BenchmarkInvalidationLag measures how long after a write is acknowledged on
// one node another node evicts its L1 copy, at the default PollInterval
// (tiered.DefaultPollInterval), on DynamoDB Local.
//
// Three nodes share one table: A writes, B and C observe. Writers run in
// TC_LAG_LANES lanes (default 4) with disjoint keys; each lane, per write:
// B and C Get the key (so each holds it in L1), A Sets it to a new value, the
// ack is the instant Set returns, and the lane waits for B's and C's
// OnInvalidate callbacks for that key. Every Set makes exactly one stream
// record (Gets that hit L2 write nothing, and the lane waits for both
// evictions before it writes the key again), so the first callback for the
// key that fires after the Set began is this write's eviction; a callback that
// fires between the start of Set and its ack counts as lag 0. Lanes exist
// only to keep the run short (one write at a time would take ~40 s); they
// also keep the stream busy, as a real deployment would.
//
// It always measures TC_LAG_WRITES writes (default 1000, or b.N if larger;
// the framework runs it once, as one run takes longer than -benchtime),
// bounded by TC_LAG_BUDGET (default 2m). Reported (per observed eviction, two
// per write):
//
//	p50-ms, p99-ms, max-ms  ack -> eviction on another node; target p99 <= 100 ms
//	mean-ms
//	writes                  writes measured
//	missed                  evictions not seen within 10 s (must be 0)
//	before-ack-frac         fraction of evictions that happened before Set
//	                        returned (counted as lag 0)
//	poll-ms                 the PollInterval in force
//
// With TC_LAG_SAMPLES=file, every lag (ms, sorted) is written to file.
// ns/op is suppressed: a write's cost is not what this measures; B/op and
// allocs/op, printed under -benchmem, are the whole run's (b.N is 1).
func BenchmarkInvalidationLag(b *testing.B) {
	writes := max(envInt("TC_LAG_WRITES", 1000), b.N)
	lanes := envInt("TC_LAG_LANES", 4)
	budget := envDuration("TC_LAG_BUDGET", 2*time.Minute)
	const observers = 2

	// Keys and their lane, fixed before the nodes exist: the callbacks read
	// this map without locks.
	routes := map[string]chan evictEvent{}
	laneKeys := make([][]string, lanes)
	for l := range lanes {
		ch := make(chan evictEvent, 4096)
		for k := range lagKeysPerLane {
			key := fmt.Sprintf("lag/lane%d/key%d", l, k)
			laneKeys[l] = append(laneKeys[l], key)
			routes[key] = ch
		}
	}
	var dropped atomic.Int64
	observe := func(node int) func(string, time.Time) {
		return func(key string, _ time.Time) {
			now := time.Now()
			if ch, ok := routes[key]; ok {
				select {
				case ch <- evictEvent{key: key, node: node, at: now}:
				default:
					dropped.Add(1)
				}
			}
		}
	}

	cfg := awsConfig(b)
	table := dynamolocal.TableName(b)
	// PollInterval is left at its default on every node.
	a, _ := newNode[string](b, cfg, table, nil)
	nodes := make([]*tiered.Cache[string], observers)
	for i := range nodes {
		nodes[i], _ = newNode(b, cfg, table, func(o *tiered.Options[string]) { o.OnInvalidate = observe(i) })
	}

	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()

	// Seed every key, then wait until both observers have seen the seeding
	// records, so that none of them is taken for a measured write's.
	for _, keys := range laneKeys {
		for _, k := range keys {
			if err := a.Set(ctx, k, "seed"); err != nil {
				b.Fatalf("seeding: %v", err)
			}
		}
	}
	for l, keys := range laneKeys {
		if err := drainSeed(ctx, routes[keys[0]], len(keys)*observers); err != nil {
			b.Fatalf("lane %d: seeding records: %v", l, err)
		}
	}

	var (
		mu      sync.Mutex
		lags    []time.Duration
		missed  int
		done    int
		firstEr error
		wg      sync.WaitGroup
		next    atomic.Int64
	)
	b.ResetTimer()
	start := time.Now()
	for l := range lanes {
		wg.Go(func() {
			events := routes[laneKeys[l][0]]
			for round := 0; ; round++ {
				if next.Add(1) > int64(writes) || ctx.Err() != nil {
					return
				}
				key := laneKeys[l][round%lagKeysPerLane]
				got, miss, err := lagOnce(ctx, a, nodes, events, key, fmt.Sprintf("v%d", round))
				mu.Lock()
				lags = append(lags, got...)
				missed += miss
				if err != nil && firstEr == nil {
					firstEr = err
				}
				done++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	if firstEr != nil {
		b.Errorf("lag run: %v", firstEr)
	}
	if done < writes {
		b.Errorf("only %d of %d writes measured within %v", done, writes, budget)
	}
	if missed > 0 || dropped.Load() > 0 {
		b.Errorf("%d evictions missed, %d callbacks dropped", missed, dropped.Load())
	}
	if len(lags) == 0 {
		b.Fatal("no eviction measured")
	}
	early := 0
	for i, d := range lags {
		if d < 0 {
			early++
			lags[i] = 0
		}
	}
	slices.Sort(lags)
	dumpLagSamples(b, lags)
	var sum time.Duration
	for _, d := range lags {
		sum += d
	}
	b.Logf("%d writes, %d evictions observed in %v (%d lanes)", done, len(lags), elapsed.Round(time.Millisecond), lanes)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(percentile(lags, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(lags, 99)), "p99-ms")
	b.ReportMetric(ms(lags[len(lags)-1]), "max-ms")
	b.ReportMetric(ms(sum/time.Duration(len(lags))), "mean-ms")
	b.ReportMetric(float64(done), "writes")
	b.ReportMetric(float64(missed), "missed")
	b.ReportMetric(float64(early)/float64(len(lags)), "before-ack-frac")
	b.ReportMetric(ms(tiered.DefaultPollInterval), "poll-ms")
}

// drainSeed waits for n callbacks on events (the seeding writes' records).
func drainSeed(ctx context.Context, events <-chan evictEvent, n int) error {
	for range n {
		select {
		case <-events:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// lagOnce makes every observer hold key in L1, writes it on a, and returns
// the lag from the write's ack to each observer's eviction, plus the number
// of observers whose eviction did not come within lagWaitEvent.
func lagOnce(ctx context.Context, a *tiered.Cache[string], observers []*tiered.Cache[string],
	events <-chan evictEvent, key, value string) ([]time.Duration, int, error) {
	for _, o := range observers {
		if _, err := o.Get(ctx, key); err != nil {
			return nil, 0, fmt.Errorf("observer Get: %w", err)
		}
	}
	begin := time.Now()
	if err := a.Set(ctx, key, value); err != nil {
		return nil, 0, fmt.Errorf("Set: %w", err)
	}
	ack := time.Now()

	lags := make([]time.Duration, 0, len(observers))
	seen := make([]bool, len(observers))
	timeout := time.NewTimer(lagWaitEvent)
	defer timeout.Stop()
	for len(lags) < len(observers) {
		select {
		case ev := <-events:
			// Callbacks for the lane's other keys, from before this Set
			// began (a late or duplicate record of an earlier write), or a
			// second one from the same observer are not this write's
			// eviction.
			if ev.key != key || ev.at.Before(begin) || seen[ev.node] {
				continue
			}
			seen[ev.node] = true
			lags = append(lags, ev.at.Sub(ack)) // < 0: evicted before Set returned
		case <-timeout.C:
			return lags, len(observers) - len(lags), nil
		case <-ctx.Done():
			return lags, len(observers) - len(lags), ctx.Err()
		}
	}
	return lags, 0, nil
}

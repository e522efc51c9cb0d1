package l1

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/tieredcache/tieredcache/internal/zipf"
)

const (
	benchKeys      = 4096    // distinct keys, all resident in both caches
	benchValueSize = 128     // bytes per value (the cost; values are pointers)
	benchZipfS     = 1.1     // Zipf exponent: a few hot keys, a long tail
	benchSeqLen    = 1 << 16 // pre-generated key indices per goroutine
	benchTTL       = DefaultMaxTTL
)

type benchValue struct{ b []byte }

// BenchmarkGetHit compares Cache.Get with a raw Ristretto v2 Get, configured
// as New configures it, on the same resident keys and values, both under
// b.RunParallel with Zipf-distributed keys (math/rand/v2's Zipf, generated
// up front). Every entry has a TTL in both caches, as in l1 (a TTL costs
// Ristretto a time.Now per hit).
//
// On a small shared machine two long runs one after the other would let a
// burst of noise land on one side only, so the benchmark interleaves
// L1BENCH_ROUNDS (default 7) pairs of short parallel runs (L1BENCH_ROUND,
// default 300ms each, the order alternating) and reports medians and the
// median of the per-round ratios:
//
//	ns/op, allocs/op, B/op  Cache.Get (median over rounds; -benchmem shows
//	                        the last two)
//	raw-ns/op               raw Ristretto Get (median over rounds)
//	ratio                   median of l1/raw per round; target <= 1.2
//	l1-allocs/1k-op, raw-allocs/1k-op  allocations per 1000 Gets (Ristretto's
//	                        read buffer allocates a batch every 64 hits on
//	                        both sides; allocs/op rounds that to 0)
//
// It measures once, whatever b.N (run it with -benchtime 1x).
func BenchmarkGetHit(b *testing.B) {
	if b.N > 1 {
		b.Skip("measures once: run with -benchtime 1x")
	}
	rounds := envInt(b, "L1BENCH_ROUNDS", 7)
	round := envDuration(b, "L1BENCH_ROUND", 300*time.Millisecond)

	keys := make([]string, benchKeys)
	values := make([]*benchValue, benchKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("l1bench/key/%06d", i)
		values[i] = &benchValue{b: make([]byte, benchValueSize)}
	}
	c := newTest[*benchValue](b, Options{})
	raw := newRaw(b, c.opts, keys, values)
	for attempt := 0; ; attempt++ {
		missing := 0
		for i, k := range keys {
			if _, ok := c.Get(k); !ok {
				missing++
				c.Set(k, values[i], benchValueSize, benchTTL)
			}
		}
		if missing == 0 {
			break
		}
		if attempt == 10 {
			b.Fatalf("l1: %d keys still not resident", missing)
		}
	}

	seqs := zipf.Sequences(16, len(keys), benchSeqLen, benchZipfS)
	var rawNs, l1Ns, ratios, rawAllocs, l1Allocs, l1Bytes []float64
	var misses int64
	for r := range rounds {
		var rr, lr parallelResult
		if r%2 == 0 {
			rr, lr = runParallel(round, seqs, keys, raw.Get), runParallel(round, seqs, keys, c.Get)
		} else {
			lr, rr = runParallel(round, seqs, keys, c.Get), runParallel(round, seqs, keys, raw.Get)
		}
		misses += rr.misses + lr.misses
		rawNs, l1Ns, ratios = append(rawNs, rr.nsPerOp()), append(l1Ns, lr.nsPerOp()), append(ratios, lr.nsPerOp()/rr.nsPerOp())
		rawAllocs, l1Allocs = append(rawAllocs, rr.allocsPerOp()), append(l1Allocs, lr.allocsPerOp())
		l1Bytes = append(l1Bytes, float64(lr.bytes)/float64(lr.ops))
		b.Logf("round %d: raw %.1f ns/op, l1 %.1f ns/op, ratio %.3f", r, rr.nsPerOp(), lr.nsPerOp(), lr.nsPerOp()/rr.nsPerOp())
	}
	if misses > 0 {
		b.Errorf("%d Gets missed: not the hit path", misses)
	}
	b.ReportMetric(median(l1Ns), "ns/op")
	b.ReportMetric(math.Round(median(l1Allocs)), "allocs/op")
	b.ReportMetric(median(l1Bytes), "B/op")
	b.ReportMetric(median(rawNs), "raw-ns/op")
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(1000*median(l1Allocs), "l1-allocs/1k-op")
	b.ReportMetric(1000*median(rawAllocs), "raw-allocs/1k-op")
}

type parallelResult struct {
	ops, misses, mallocs, bytes int64
	elapsed                     time.Duration
}

func (r parallelResult) nsPerOp() float64     { return float64(r.elapsed.Nanoseconds()) / float64(r.ops) }
func (r parallelResult) allocsPerOp() float64 { return float64(r.mallocs) / float64(r.ops) }

// runParallel is b.RunParallel for one fixed duration: GOMAXPROCS goroutines
// each walk their own Zipf sequence calling get, in chunks, until d is up;
// ns/op is wall time over all goroutines' operations, as RunParallel
// reports it. (testing.Benchmark cannot be used here: called inside a
// running benchmark it deadlocks on the testing package's benchmark lock.)
func runParallel(d time.Duration, seqs [][]int32, keys []string, get func(string) (*benchValue, bool)) parallelResult {
	const chunk = 1024
	procs := runtime.GOMAXPROCS(0)
	var (
		stop         atomic.Bool
		ops, misses  atomic.Int64
		ready, start sync.WaitGroup
		done         sync.WaitGroup
	)
	start.Add(1)
	for g := range procs {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			seq, mask := seqs[g%len(seqs)], len(seqs[0])-1
			ready.Done()
			start.Wait()
			n, miss := 0, 0
			for !stop.Load() {
				for range chunk {
					if _, ok := get(keys[seq[n&mask]]); !ok {
						miss++
					}
					n++
				}
			}
			ops.Add(int64(n))
			misses.Add(int64(miss))
		}()
	}
	ready.Wait()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	start.Done()
	time.Sleep(d)
	stop.Store(true)
	done.Wait()
	elapsed := time.Since(t0)
	runtime.ReadMemStats(&after)
	return parallelResult{
		ops:     ops.Load(),
		misses:  misses.Load(),
		mallocs: int64(after.Mallocs - before.Mallocs),
		bytes:   int64(after.TotalAlloc - before.TotalAlloc),
		elapsed: elapsed,
	}
}

// newRaw builds the baseline: Ristretto as New configures it for o, holding
// every key with the same TTL and cost as the l1 side.
func newRaw(b *testing.B, o resolved, keys []string, values []*benchValue) *ristretto.Cache[string, *benchValue] {
	b.Helper()
	rc, err := ristretto.NewCache(&ristretto.Config[string, *benchValue]{
		NumCounters:        o.numCounters,
		MaxCost:            o.maxBytes,
		BufferItems:        o.bufferItems,
		IgnoreInternalCost: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(rc.Close)
	for attempt := 0; ; attempt++ {
		missing := 0
		for i, k := range keys {
			if _, ok := rc.Get(k); !ok {
				missing++
				rc.SetWithTTL(k, values[i], int64(len(k))+benchValueSize+o.itemOverhead, benchTTL)
			}
		}
		rc.Wait()
		if missing == 0 {
			return rc
		}
		if attempt == 10 {
			b.Fatalf("raw Ristretto: %d keys still not resident", missing)
		}
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// README markers: the text between them is the report's table.
const (
	beginMarker = "<!-- bench:begin -->"
	endMarker   = "<!-- bench:end -->"
)

// errNoMarkers: the README lacks the markers (or has them out of order).
var errNoMarkers = errors.New("README has no " + beginMarker + " ... " + endMarker + " section")

// rewriteBetweenMarkers returns doc with the text between the markers
// replaced by body (the markers themselves are kept, each on its own line).
func rewriteBetweenMarkers(doc, body string) (string, error) {
	i := strings.Index(doc, beginMarker)
	j := strings.Index(doc, endMarker)
	if i < 0 || j < i || strings.Count(doc, beginMarker) != 1 || strings.Count(doc, endMarker) != 1 {
		return "", errNoMarkers
	}
	head := doc[:i+len(beginMarker)]
	return head + "\n" + strings.TrimRight(body, "\n") + "\n" + doc[j:], nil
}

func rewriteBetweenMarkersFile(path, body string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	doc, err := rewriteBetweenMarkers(string(b), body)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}

// l1hitFigures are BenchmarkL1Hit/zipf's figures at one -cpu.
type l1hitFigures struct {
	procs                            int
	ns, raw, untimed, ratio, ratioUt float64
	allocs                           float64
}

func (r *report) l1hit() ([]l1hitFigures, error) {
	var out []l1hitFigures
	for _, procs := range []int{1, 2} {
		res, ok := r.L1Hit.find("BenchmarkL1Hit/zipf", procs)
		if !ok {
			return nil, fmt.Errorf("BenchmarkL1Hit/zipf at -cpu %d: no result", procs)
		}
		f := l1hitFigures{procs: procs}
		for unit, dst := range map[string]*float64{"ns/op": &f.ns, "raw-ns/op": &f.raw, "untimed-ns/op": &f.untimed,
			"ratio": &f.ratio, "ratio-untimed": &f.ratioUt, "allocs/op": &f.allocs} {
			v, err := res.metric(unit)
			if err != nil {
				return nil, err
			}
			*dst = v
		}
		out = append(out, f)
	}
	return out, nil
}

// peer names in BenchmarkPeers' metrics, and how the page names them.
var peers = []struct{ key, label string }{
	{"ristretto", "Ristretto v2 (raw, TTL)"},
	{"sturdyc", "sturdyc v1.1.5"},
	{"rueidis", "rueidis v1.0.79 CSC"},
	{"goredis", "go-redis v9.23.0 CSC"},
}

// peerFigures: ns/op of tiered and each peer, and each peer's ratio, at one -cpu.
type peerFigures struct {
	procs  int
	tiered float64
	ns     map[string]float64
	ratio  map[string]float64
}

func (r *report) peers() ([]peerFigures, error) {
	var out []peerFigures
	for _, procs := range []int{1, 2} {
		res, ok := r.Peers.find("BenchmarkPeers/zipf", procs)
		if !ok {
			return nil, fmt.Errorf("BenchmarkPeers/zipf at -cpu %d: no result", procs)
		}
		f := peerFigures{procs: procs, ns: map[string]float64{}, ratio: map[string]float64{}}
		var err error
		if f.tiered, err = res.metric("tiered-ns/op"); err != nil {
			return nil, err
		}
		for _, p := range peers {
			if f.ns[p.key], err = res.metric(p.key + "-ns/op"); err != nil {
				return nil, err
			}
			if f.ratio[p.key], err = res.metric(p.key + "-ratio"); err != nil {
				return nil, err
			}
		}
		out = append(out, f)
	}
	return out, nil
}

// other returns a metric of a -cpu 2 result of the second run.
func (r *report) other(name, unit string) (float64, error) {
	res, ok := r.Others.find(name, 2)
	if !ok {
		return 0, fmt.Errorf("%s at -cpu 2: no result", name)
	}
	return res.metric(unit)
}

// hitAt returns the simulated hit ratio for exponent s and budget.
func (r *report) hitAt(s float64, budget int64) float64 {
	for _, hs := range r.Hit {
		if hs.S == s {
			for _, p := range hs.Points {
				if p.MaxBytes == budget {
					return p.HitRatio
				}
			}
		}
	}
	return -1
}

// writeReport draws the plots and writes README.md into dir.
func writeReport(dir string, r *report) error {
	l1, err := r.l1hit()
	if err != nil {
		return err
	}
	pf, err := r.peers()
	if err != nil {
		return err
	}
	p50, p99 := quantile(r.Lags, 50), quantile(r.Lags, 99)

	if err := plotHitRatio(dir, r.Hit, r.Sim.Keys, r.Sim.ValueSize); err != nil {
		return err
	}
	if err := plotLagCDF(dir, r.Lags, p50, p99); err != nil {
		return err
	}
	cats := []string{"-cpu 1", "-cpu 2"}
	if err := plotRatioBars(filepath.Join(dir, "l1-hit.png"),
		"L1-hit Get: tiered ns/op ÷ raw Ristretto ns/op (same run, interleaved)",
		"tiered ÷ raw Ristretto (ns/op ratio)", cats, []barGroup{
			{"vs Ristretto with TTL (ratio)", []float64{l1[0].ratio, l1[1].ratio}},
			{"vs Ristretto without TTL (ratio-untimed)", []float64{l1[0].ratioUt, l1[1].ratioUt}},
		}); err != nil {
		return err
	}
	var groups []barGroup
	for _, p := range peers {
		groups = append(groups, barGroup{p.label, []float64{pf[0].ratio[p.key], pf[1].ratio[p.key]}})
	}
	if err := plotRatioBars(filepath.Join(dir, "peers.png"),
		"Local-hit Get of each peer ÷ tieredcache L1-hit Get (same run, interleaved)",
		"peer ns/op ÷ tieredcache ns/op (>1: peer slower)", cats, groups); err != nil {
		return err
	}
	if err := plotReadUnits(dir, r.RCU); err != nil {
		return err
	}

	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Benchmark report\n\n")
	w("Generated by `make bench-report` (bench/report, `go run .`) on %s, in %s, on a %d-CPU machine (%s), %s.\n",
		r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Elapsed.Round(time.Second), r.NumCPU, r.CPU, r.GoVersion)
	w("Every figure below comes from that one run on a shared, noisy machine. The comparisons are ratios of\n")
	w("things measured side by side in the same run (loops interleaved, order rotating per round, medians over\n")
	w("rounds); nanosecond figures are given only to show what the ratios were made of, and are not claims\n")
	w("about any other machine. The raw `go test -bench` outputs are in [raw/](raw/).\n\n")
	w("Do not edit: this page and the README's benchmark table are rewritten by `make bench-report`.\n\n")

	w("## L1 hit ratio against L1 size\n\n![L1 hit ratio against L1MaxBytes](hit-ratio.png)\n\n")
	w("A simulation with tiered's `l1` package directly (not the whole cache): %d keys of %d B values\n", r.Sim.Keys, r.Sim.ValueSize)
	w("(each entry costs key + value + the default 256 B per-item overhead, so all keys need %s),\n",
		mib(int64(r.Sim.Keys)*int64(len("sim/key/0000000")+r.Sim.ValueSize+256)))
	w("cache-aside: a Get that misses fills the key as tiered does after an L2 read (BeginFill, Fill), subject to\n")
	w("Ristretto's TinyLFU admission. %d Zipf-distributed requests warm the cache, the next %d are counted;\n", r.Sim.Requests, r.Sim.Requests)
	w("one goroutine. The default `L1MaxBytes` is 64 MiB.\n\n")
	w("| L1MaxBytes |")
	for _, s := range r.Hit {
		w(" s=%.2f |", s.S)
	}
	w("\n|---|")
	for range r.Hit {
		w("---|")
	}
	w("\n")
	for i, bgt := range r.Sim.Budgets {
		w("| %s |", mib(bgt))
		for _, s := range r.Hit {
			w(" %.1f%% |", 100*s.Points[i].HitRatio)
		}
		w("\n")
	}

	w("\n## ack→evict lag\n\n![ack→evict lag CDF](lag-cdf.png)\n\n")
	lagWrites, _ := r.other("BenchmarkInvalidationLag", "writes")
	missed, _ := r.other("BenchmarkInvalidationLag", "missed")
	poll, _ := r.other("BenchmarkInvalidationLag", "poll-ms")
	w("`BenchmarkInvalidationLag`: node A writes (Set) a key that nodes B and C hold in L1; each sample is the time from\n")
	w("A's Set returning to B's or C's OnInvalidate for that key (an eviction before the ack counts as 0). %.0f writes,\n", lagWrites)
	w("%d evictions, %.0f missed, at the default %.0f ms PollInterval, on DynamoDB Local. p50 %.1f ms (%.2f× the poll\n",
		len(r.Lags), missed, poll, p50, p50/poll)
	w("interval), p99 %.1f ms (%.2f×), max %.1f ms. Samples: [raw/lag-samples.txt](raw/lag-samples.txt).\n\n", p99, p99/poll, r.Lags[len(r.Lags)-1])

	w("## L1-hit cost against raw Ristretto\n\n![L1-hit ns/op ratio to raw Ristretto](l1-hit.png)\n\n")
	w("`BenchmarkL1Hit/zipf`: `tiered.Cache[[]byte].Get` of L1-resident keys against raw Ristretto v2 `Get` of the same\n")
	w("4096 keys and 128 B values, same Zipf sequences, `b.RunParallel`; raw Ristretto once with a TTL on every entry\n")
	w("(what expiry costs when Ristretto checks it) and once without (the floor). Ratio = tiered ÷ raw, median of\n")
	w("per-round ratios.\n\n")
	w("| -cpu | tiered ns/op | Ristretto+TTL ns/op | Ristretto ns/op | ratio vs TTL | ratio vs no TTL | allocs/op |\n|---|---|---|---|---|---|---|\n")
	for _, f := range l1 {
		w("| %d | %.1f | %.1f | %.1f | **%.2f** | **%.2f** | %.0f |\n", f.procs, f.ns, f.raw, f.untimed, f.ratio, f.ratioUt, f.allocs)
	}

	w("\n## Against the peers\n\n![peer ns/op ratio to tieredcache](peers.png)\n\n")
	w("`bench/peers` (`BenchmarkPeers/zipf`, a nested module): the same workload as `BenchmarkL1Hit` (4096 keys,\n")
	w("128 B values, Zipf s=1.1, `b.RunParallel`), every key resident in every cache, each entry with the same\n")
	w("5-minute TTL: tieredcache (`DisableInvalidation`, DynamoDB Local behind it), raw Ristretto, sturdyc, and\n")
	w("Redis client-side caching (RESP3 `CLIENT TRACKING`) through rueidis (`DoCache`) and go-redis v9\n")
	w("(`ClientSideCacheConfig`, experimental in v9.23.0), on a redis-server %s started by the benchmark\n", redisVersion())
	nonhits := 0.0
	for _, procs := range []int{1, 2} {
		if res, ok := r.Peers.find("BenchmarkPeers/zipf", procs); ok {
			for _, p := range peers {
				nonhits += res.Metrics[p.key+"-nonhits"]
			}
			nonhits += res.Metrics["tiered-nonhits"]
		}
	}
	w("on a free loopback port. A timed Get that is not a local hit (a miss, or a round trip to Redis) counts as a\n")
	w("non-hit; more than 1 in 10,000 fails the run. This run: %.0f non-hits in all.\n", nonhits)
	w("Ratio = peer ns/op ÷ tieredcache ns/op, median of per-round ratios: above 1, the peer's hit costs more.\n\n")
	w("| peer | -cpu 1 ns/op | ratio | -cpu 2 ns/op | ratio |\n|---|---|---|---|---|\n")
	w("| tieredcache | %.1f | 1 | %.1f | 1 |\n", pf[0].tiered, pf[1].tiered)
	for _, p := range peers {
		w("| %s | %.1f | **%.2f** | %.1f | **%.2f** |\n", p.label, pf[0].ns[p.key], pf[0].ratio[p.key], pf[1].ns[p.key], pf[1].ratio[p.key])
	}
	w("\nThese are local-hit costs only. They say nothing of what each peer does on a miss, across processes, or\n")
	w("about staleness: Redis CSC invalidates through the Redis connection, tieredcache through the DynamoDB Stream.\n")

	w("\n## DynamoDB read units against the L1 hit ratio\n\n![read units per 1,000 Gets](read-units.png)\n\n")
	w("A real `tiered.Cache` on DynamoDB Local, per L1 budget: %d Zipf (s=%.1f) Gets warm L1, the next %d are counted,\n",
		r.RCUCfg.Requests, r.RCUCfg.S, r.RCUCfg.Requests)
	w("one at a time (no two Gets collapse into one read). The L1 hit ratio is the cache's own Stats; the read units\n")
	w("are counted by an SDK middleware that sets `ReturnConsumedCapacity=TOTAL` on every GetItem and BatchGetItem and\n")
	w("adds up the `ConsumedCapacity` DynamoDB returns")
	allMeasured := true
	for _, s := range r.RCU {
		allMeasured = allMeasured && s.Measured
	}
	if !allMeasured {
		w(" (where the server reported none, reads counted × ceil(item size / 4 KB))")
	}
	w(". Reads are strongly consistent (tiered's default): 1 unit per 4 KB of item; eventually consistent reads\n")
	w("(`EventuallyConsistentReads`) cost half. The dashed lines are the model (1 − hit ratio) × 1000 × units per read.\n\n")
	w("| value size | keys | L1MaxBytes | L1 hit ratio | L2 reads | read units | units / 1,000 Gets | model |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.RCU {
		for _, p := range s.Points {
			w("| %d B | %d | %s | %.1f%% | %d | %.1f | %.1f | %.1f |\n", s.ValueSize, s.Keys, mib(p.L1MaxBytes), 100*p.HitRatio, p.Reads, p.Units, p.UnitsPer1k, p.ModelPer1k)
		}
	}
	w("\n## Reproduce\n\n```\nmake bench-report\n```\n\nor, to redraw from the raw outputs without running the benchmarks again: `cd bench/report && go run . -reuse`\n")
	w("(the simulation and the read-unit measurement run again).\n")
	return os.WriteFile(filepath.Join(dir, "README.md"), b.Bytes(), 0o644)
}

// readmeTable is the README's benchmark table: the figures of this run.
func readmeTable(r *report) (string, error) {
	l1, err := r.l1hit()
	if err != nil {
		return "", err
	}
	pf, err := r.peers()
	if err != nil {
		return "", err
	}
	get := func(name, unit string) float64 {
		if err != nil {
			return 0
		}
		var v float64
		v, err = r.other(name, unit)
		return v
	}
	l2s := get("BenchmarkL2Hit/serial", "ns/op")
	l2p := get("BenchmarkL2Hit/parallel", "ns/op")
	reads := get("BenchmarkColdStampede/G=1000", "l2reads/stampede")
	loads := get("BenchmarkColdStampede/G=1000", "loads/stampede")
	maxReads := get("BenchmarkColdStampede/G=1000", "max-l2reads")
	maxLoads := get("BenchmarkColdStampede/G=1000", "max-loads")
	poll := get("BenchmarkInvalidationLag", "poll-ms")
	writes := get("BenchmarkInvalidationLag", "writes")
	if err != nil {
		return "", err
	}
	p50, p99, pmax := quantile(r.Lags, 50), quantile(r.Lags, 99), r.Lags[len(r.Lags)-1]

	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("Generated by `make bench-report` (%s, %d CPUs, one run; see [bench/report](bench/report/README.md) for plots,\n",
		r.Started.UTC().Format("2006-01-02"), r.NumCPU)
	w("method and raw outputs). Ratios compare loops interleaved in the same run; absolute times are this machine's.\n\n")
	w("| benchmark | what it reports | measured |\n|---|---|---|\n")
	w("| `BenchmarkL1Hit/zipf` | L1-hit `Get` against raw Ristretto `Get` on the same keys, values and Zipf sequence, parallel; ratio = tiered ns/op ÷ raw ns/op | vs Ristretto with TTL: %.2f (-cpu 1), %.2f (-cpu 2); vs no TTL: %.2f, %.2f; %.0f allocs/op |\n",
		l1[0].ratio, l1[1].ratio, l1[0].ratioUt, l1[1].ratioUt, l1[1].allocs)
	w("| `bench/peers` `BenchmarkPeers/zipf` | the same hits in the peers, ratio = peer ns/op ÷ tieredcache ns/op (-cpu 1 / -cpu 2) |")
	for i, p := range peers {
		if i > 0 {
			w(";")
		}
		w(" %s %.2f / %.2f", p.key, pf[0].ratio[p.key], pf[1].ratio[p.key])
	}
	w(" |\n")
	w("| `BenchmarkL2Hit/serial`, `/parallel` | an L1 miss answered by the table (DynamoDB Local on loopback, this machine) | %.2f ms/op serial, %.2f ms/op with 2 CPUs |\n",
		l2s/1e6, l2p/1e6)
	w("| `BenchmarkColdStampede/G=1000` | L2 reads and loader calls per stampede of 1,000 concurrent `GetOrLoad` on one cold key | %.0f and %.0f (max %.0f and %.0f) |\n",
		reads, loads, maxReads, maxLoads)
	w("| `BenchmarkInvalidationLag` | write acknowledged on one node → evicted on another, over %.0f writes, at the default %.0f ms poll | p50 %.0f ms, p99 %.0f ms, max %.0f ms (p99 = %.2f× the poll interval) |\n",
		writes, poll, p50, p99, pmax, p99/poll)
	if h := r.hitAt(1.1, 64<<20); h >= 0 {
		w("| L1 hit ratio (simulation, `l1` package) | Zipf s=1.1 over %d keys of %d B, default 64 MiB L1 | %.1f%% |\n", r.Sim.Keys, r.Sim.ValueSize, 100*h)
	}
	if len(r.RCU) > 0 && len(r.RCU[0].Points) > 0 {
		s := r.RCU[0]
		lo, hi := s.Points[0], s.Points[len(s.Points)-1]
		w("| read units (DynamoDB Local, `ConsumedCapacity`) | per 1,000 `Get`s, %d B values, strongly consistent | %.0f at %.0f%% L1 hits, %.0f at %.0f%% |\n",
			s.ValueSize, lo.UnitsPer1k, 100*lo.HitRatio, hi.UnitsPer1k, 100*hi.HitRatio)
	}
	return b.String(), nil
}

// redisVersion is the version of the redis-server on $PATH, as the page
// names it ("" if unknown).
func redisVersion() string {
	out, err := execOutput("redis-server", "--version")
	if err != nil {
		return ""
	}
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v
		}
	}
	return ""
}

// Command benchreport runs tieredcache's benchmarks and writes the benchmark
// report: PNG plots (gonum/plot) and a Markdown page that embeds them, in
// bench/report/, and the benchmark table of the repository's README.md
// (between the <!-- bench:begin --> and <!-- bench:end --> markers).
//
// It is a nested module so that gonum stays out of the core module. Run it
// through `make bench-report`, or from bench/report:
//
//	go run . [-out .] [-root ../..] [-reuse]
//
// Every figure comes from one run of this command on one machine; the page
// gives them as ratios between things measured side by side in that run.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchreport: "+format+"\n", args...)
}

func main() {
	if err := run(); err != nil {
		logf("%v", err)
		os.Exit(1)
	}
}

// report is everything the page and the README table are made from.
type report struct {
	Started   time.Time
	Elapsed   time.Duration
	CPU       string
	NumCPU    int
	GoVersion string

	L1Hit  benchOutput // BenchmarkL1Hit/zipf at -cpu 1,2
	Others benchOutput // BenchmarkL2Hit, BenchmarkColdStampede, BenchmarkInvalidationLag at -cpu 2
	Peers  benchOutput // bench/peers BenchmarkPeers/zipf at -cpu 1,2
	Lags   []float64   // ack -> evict, ms, sorted

	Sim    simConfig
	Hit    []hitSeries
	RCUCfg rcuConfig
	RCU    []rcuSeries
}

func run() error {
	out := flag.String("out", ".", "directory the report is written to (bench/report)")
	root := flag.String("root", "../..", "repository root (the core module)")
	reuse := flag.Bool("reuse", false, "reuse the raw benchmark outputs in <out>/raw instead of running the benchmarks (re-plot only)")
	flag.Parse()

	r := report{Started: time.Now(), NumCPU: runtime.NumCPU(), GoVersion: runtime.Version()}
	rawDir := filepath.Join(*out, "raw")
	if err := os.MkdirAll(rawDir, 0o755); err != nil {
		return err
	}
	rootAbs, err := filepath.Abs(*root)
	if err != nil {
		return err
	}
	lagFile, err := filepath.Abs(filepath.Join(rawDir, "lag-samples.txt"))
	if err != nil {
		return err
	}

	type step struct {
		name string
		dir  string
		env  []string
		args []string
		dst  *benchOutput
	}
	steps := []step{
		{"l1hit.txt", rootAbs, []string{"TC_L1HIT_ROUNDS=5"},
			[]string{"-run", "^$", "-bench", "^BenchmarkL1Hit$/^zipf$", "-benchmem", "-cpu", "1,2", "-benchtime", "1000000x", "./bench/"}, &r.L1Hit},
		{"others.txt", rootAbs, []string{"TC_LAG_SAMPLES=" + lagFile},
			[]string{"-run", "^$", "-bench", "^(BenchmarkL2Hit|BenchmarkColdStampede|BenchmarkInvalidationLag)$", "-benchmem", "-cpu", "2", "-benchtime", "1s", "-timeout", "10m", "./bench/"}, &r.Others},
		{"peers.txt", filepath.Join(rootAbs, "bench", "peers"), []string{"TC_PEERS_ROUNDS=5"},
			[]string{"-run", "^$", "-bench", "^BenchmarkPeers$", "-cpu", "1,2", "-benchtime", "1000000x", "."}, &r.Peers},
	}
	for _, s := range steps {
		raw := filepath.Join(rawDir, s.name)
		var err error
		if *reuse {
			var b []byte
			if b, err = os.ReadFile(raw); err == nil {
				*s.dst, err = parseBench(string(b))
			}
		} else {
			// One retry: on a shared machine DynamoDB Local can time out a
			// setup call; a second failure ends the report.
			for attempt := range 2 {
				if *s.dst, err = goTest(s.dir, raw, append(s.env, "GOFLAGS=-count=1"), s.args...); err == nil {
					break
				}
				logf("attempt %d: %v", attempt+1, err)
			}
		}
		if err != nil {
			return err
		}
		if len(s.dst.Results) == 0 {
			return fmt.Errorf("%s: no benchmark results", s.name)
		}
	}
	r.CPU = r.L1Hit.CPU
	if r.Lags, err = readLags(lagFile); err != nil {
		return err
	}

	r.Sim = simConfig{
		Keys: 100_000, ValueSize: 1024, Requests: 500_000,
		Exponents: []float64{1.01, 1.1, 1.3},
		Budgets:   []int64{1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20, 32 << 20, 64 << 20, 128 << 20},
	}
	logf("hit ratio simulation (l1 package): %d keys of %d B", r.Sim.Keys, r.Sim.ValueSize)
	if r.Hit, err = simulateHitRatio(r.Sim); err != nil {
		return err
	}

	r.RCUCfg = rcuConfig{
		ValueSizes: []int{1024, 10 * 1024},
		Keys:       []int{2000, 1000},
		Fractions:  []float64{0.03, 0.1, 0.25, 0.5, 1.2},
		Requests:   6000,
		S:          1.1,
	}
	logf("read units: starting DynamoDB Local")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	srv, err := dynamolocal.Start(ctx)
	if err != nil {
		return fmt.Errorf("DynamoDB Local: %w", err)
	}
	r.RCU, err = measureReadUnits(ctx, dynamolocal.AWSConfig(srv.Endpoint()), r.RCUCfg)
	_ = srv.Stop()
	if err != nil {
		return fmt.Errorf("read units: %w", err)
	}
	r.Elapsed = time.Since(r.Started)

	if err := writeReport(*out, &r); err != nil {
		return err
	}
	table, err := readmeTable(&r)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "table.md"), []byte(table), 0o644); err != nil {
		return err
	}
	readme := filepath.Join(rootAbs, "README.md")
	if err := rewriteBetweenMarkersFile(readme, table); err != nil {
		return err
	}
	logf("wrote %s and the table in %s (%v)", filepath.Join(*out, "README.md"), readme, r.Elapsed.Round(time.Second))
	return nil
}

// readLags reads the ack -> evict samples BenchmarkInvalidationLag wrote
// (ms, one a line) and returns them sorted.
func readLags(path string) ([]float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("lag samples (TC_LAG_SAMPLES): %w", err)
	}
	var lags []float64
	for _, line := range strings.Fields(string(b)) {
		v, err := strconv.ParseFloat(line, 64)
		if err != nil {
			return nil, fmt.Errorf("lag samples: %q: %w", line, err)
		}
		lags = append(lags, v)
	}
	if len(lags) == 0 {
		return nil, fmt.Errorf("lag samples: %s is empty", path)
	}
	slices.Sort(lags)
	return lags, nil
}

// quantile of sorted xs, nearest rank (as the benchmark computes it).
func quantile(sorted []float64, p float64) float64 {
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

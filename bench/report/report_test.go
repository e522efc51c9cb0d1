package main

import (
	"errors"
	"strings"
	"testing"
)

func TestParseBench(t *testing.T) {
	out, err := parseBench(`goos: linux
cpu: AMD EPYC
BenchmarkL1Hit/zipf         	 1000000	       153.2 ns/op	         0 B/op	         0 allocs/op	         1.04 ratio
BenchmarkL1Hit/zipf-2       	 1000000	       80.50 ns/op	         1.10 ratio
BenchmarkColdStampede/G=1000-2 	      20	  1.000 l2reads/stampede
BenchmarkInvalidationLag
    lag_test.go:170: 1000 writes
BenchmarkInvalidationLag-2  	       1	         0 ns/op	        42.00 p50-ms
PASS
`)
	if err != nil {
		t.Fatal(err)
	}
	if out.CPU != "AMD EPYC" {
		t.Errorf("cpu %q", out.CPU)
	}
	if len(out.Results) != 4 {
		t.Fatalf("%d results, want 4: %+v", len(out.Results), out.Results)
	}
	r, ok := out.find("BenchmarkL1Hit/zipf", 1)
	if !ok || r.N != 1000000 || r.Metrics["ratio"] != 1.04 || r.Metrics["ns/op"] != 153.2 {
		t.Errorf("-cpu 1: %+v %v", r, ok)
	}
	r, ok = out.find("BenchmarkL1Hit/zipf", 2)
	if !ok || r.Metrics["ratio"] != 1.10 {
		t.Errorf("-cpu 2: %+v %v", r, ok)
	}
	r, ok = out.find("BenchmarkColdStampede/G=1000", 2)
	if !ok || r.Metrics["l2reads/stampede"] != 1 {
		t.Errorf("stampede: %+v %v", r, ok)
	}
	if _, err := r.metric("ns/op"); err == nil {
		t.Error("missing metric: no error")
	}
	if r, ok := out.find("BenchmarkInvalidationLag", 2); !ok || r.Metrics["p50-ms"] != 42 {
		t.Errorf("lag: %+v %v", r, ok)
	}
}

func TestRewriteBetweenMarkers(t *testing.T) {
	doc := "# x\n\n" + beginMarker + "\nold table\n" + endMarker + "\n\nafter\n"
	got, err := rewriteBetweenMarkers(doc, "new table\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# x\n\n" + beginMarker + "\nnew table\n" + endMarker + "\n\nafter\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// Rewriting again with the same body changes nothing.
	if again, _ := rewriteBetweenMarkers(got, "new table"); again != got {
		t.Errorf("not idempotent: %q", again)
	}
	for _, bad := range []string{"no markers", endMarker + beginMarker, beginMarker + beginMarker + endMarker} {
		if _, err := rewriteBetweenMarkers(bad, "x"); !errors.Is(err, errNoMarkers) {
			t.Errorf("%q: err %v, want errNoMarkers", bad, err)
		}
	}
}

// The simulation's hit ratio grows with the budget, and a budget that holds
// every key serves nearly everything from L1.
func TestSimulateHitRatioGrowsWithBudget(t *testing.T) {
	perItem := int64(len("sim/key/0000000") + 100 + 256)
	series, err := simulateHitRatio(simConfig{
		Keys: 2000, ValueSize: 100, Requests: 20000, Exponents: []float64{1.2},
		Budgets: []int64{perItem * 20, perItem * 200, perItem * 4000},
	})
	if err != nil {
		t.Fatal(err)
	}
	pts := series[0].Points
	if len(pts) != 3 {
		t.Fatalf("%d points", len(pts))
	}
	if !(pts[0].HitRatio < pts[1].HitRatio && pts[1].HitRatio < pts[2].HitRatio) {
		t.Errorf("hit ratio does not grow with the budget: %+v", pts)
	}
	if pts[2].HitRatio < 0.9 {
		t.Errorf("every key fits, hit ratio %.3f < 0.9", pts[2].HitRatio)
	}
}

func TestQuantile(t *testing.T) {
	xs := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if q := quantile(xs, 50); q != 5 {
		t.Errorf("p50 %v", q)
	}
	if q := quantile(xs, 99); q != 10 {
		t.Errorf("p99 %v", q)
	}
	if !strings.Contains(mib(64<<20), "64 MiB") {
		t.Errorf("mib %q", mib(64<<20))
	}
}

package main

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/demo/demotest"
	"go.uber.org/goleak"
)

// demoMainEnv makes the test binary behave as the demo itself, so that the
// test runs the real parent and node processes (built with -race when the
// test is) without a separate go build.
const demoMainEnv = "TIEREDCACHE_OTEL_DEMO_AS_MAIN"

func TestMain(m *testing.M) {
	if demotest.AsMain(demoMainEnv) {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// summaryFile is the part of -summary-json this test reads.
type summaryFile struct {
	OK      bool `json:"ok"`
	Summary struct {
		Ended string `json:"ended"`
	} `json:"summary"`
	Nodes []struct {
		Name    string `json:"name"`
		Exit    string `json:"exit"`
		Final   bool   `json:"final"`
		Metrics string `json:"metrics"`
		Stats   *struct {
			Reads         uint64   `json:"reads"`
			Sets          uint64   `json:"sets"`
			Deletes       uint64   `json:"deletes"`
			L1Hits        uint64   `json:"l1_hits"`
			L2Calls       uint64   `json:"l2_calls"`
			MetricsURL    string   `json:"metrics_url"`
			MetricsScrape []string `json:"metrics_scrape"`
		} `json:"stats"`
	} `json:"nodes"`
}

// TestDemoServesPrometheusMetrics runs the demo as `make demo` does (it
// starts DynamoDB Local itself; a run that cannot fails, in CI or not), with
// two nodes, ending once each has made 200 requests. Each node served its
// metrics on a loopback /metrics through OpenTelemetry's Prometheus exporter
// and scraped it over HTTP after its workload, before closing its cache: the
// scrape must hold the tieredcache_* series of that node, with at least as
// many L1 hits and DynamoDB calls as the node's own counters taken just
// before (counters only grow), and more than zero.
func TestDemoServesPrometheusMetrics(t *testing.T) {
	const requests = 200
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "summary.json")
	cmd := demotest.Command(t, ctx, demoMainEnv, "-summary-json", path,
		"-nodes", "2", "-requests", strconv.Itoa(requests), "-duration", "4m", "-keys", "100",
		"-workers", "4", "-rate", "400", "-write-pct", "5", "-interval", "500ms", "-show-metrics")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	defer func() {
		if t.Failed() {
			t.Logf("demo output:\n%s", out)
		}
	}()
	s := demotest.ReadSummary[summaryFile](t, path)
	if !s.OK || s.Summary.Ended != "requests" {
		t.Errorf("summary: ok %v, ended %q; want ok, ended on requests", s.OK, s.Summary.Ended)
	}
	if len(s.Nodes) != 2 {
		t.Fatalf("%d nodes in the summary, want 2", len(s.Nodes))
	}
	for _, n := range s.Nodes {
		if n.Exit != "ok" || !n.Final || n.Stats == nil {
			t.Errorf("node %s: exit %q, final stats %v", n.Name, n.Exit, n.Final)
			continue
		}
		st := n.Stats
		if got := st.Reads + st.Sets + st.Deletes; got < requests {
			t.Errorf("node %s made %d requests, want at least %d", n.Name, got, requests)
		}
		u, err := url.Parse(n.Metrics)
		if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" || u.Path != "/metrics" || u.Port() == "" {
			t.Errorf("node %s: metrics URL %q, want http://127.0.0.1:PORT/metrics", n.Name, n.Metrics)
		}
		if st.MetricsURL != n.Metrics {
			t.Errorf("node %s: scraped %q, reported %q when ready", n.Name, st.MetricsURL, n.Metrics)
		}
		node := `node="` + n.Name + `"`
		for _, l := range st.MetricsScrape {
			if !strings.HasPrefix(l, "tieredcache_") || !strings.Contains(l, node) {
				t.Errorf("node %s: scrape line %q is not a tieredcache_ series of this node", n.Name, l)
			}
		}
		l1Hits := sample(t, st.MetricsScrape, "tieredcache_hits_total", node, `tier="l1"`)
		if l1Hits == 0 || l1Hits < float64(st.L1Hits) {
			t.Errorf("node %s: tieredcache_hits_total{tier=\"l1\"} = %v, want > 0 and >= the node's %d L1 hits",
				n.Name, l1Hits, st.L1Hits)
		}
		getItems := sample(t, st.MetricsScrape, "tieredcache_dynamodb_calls_total", node, `operation="GetItem"`)
		if getItems == 0 {
			t.Errorf("node %s: tieredcache_dynamodb_calls_total{operation=\"GetItem\"} = 0 after %d reads", n.Name, st.Reads)
		}
		if sample(t, st.MetricsScrape, "tieredcache_dynamodb_duration_seconds_count", node, `operation="GetItem"`, `outcome="ok"`) == 0 {
			t.Errorf("node %s: no GetItem duration observed (InstrumentDynamoDB)", n.Name)
		}
		for _, want := range []string{
			"node " + n.Name + " ready · metrics " + n.Metrics, // the live view (plain)
			"# GET " + n.Metrics + " (node " + n.Name,          // -show-metrics
		} {
			if !strings.Contains(string(out), want) {
				t.Errorf("output lacks %q", want)
			}
		}
	}
	if !strings.Contains(string(out), "  metrics         n1 http://127.0.0.1:") {
		t.Errorf("summary lacks the metrics line")
	}
}

// sample returns the value of the one series of metric whose labels include
// every one of labels, failing the test when there is not exactly one.
func sample(t *testing.T, lines []string, metric string, labels ...string) float64 {
	t.Helper()
	var found []float64
	for _, l := range lines {
		name, rest, ok := strings.Cut(l, "{")
		if !ok || name != metric {
			continue
		}
		lbls, val, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		match := true
		for _, want := range labels {
			match = match && strings.Contains(lbls, want)
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			t.Errorf("%q: %v", l, err)
			continue
		}
		found = append(found, v)
	}
	if len(found) != 1 {
		t.Errorf("%d series %s{%s} in the scrape, want 1", len(found), metric, strings.Join(labels, ","))
		return 0
	}
	return found[0]
}

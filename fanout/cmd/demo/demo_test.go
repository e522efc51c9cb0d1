package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/demo/demotest"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
)

// demoMainEnv makes the test binary behave as the demo itself, so that the
// test runs the real parent and node processes (built with -race when the
// test is) without a separate go build.
const demoMainEnv = "TIEREDCACHE_FANOUT_DEMO_AS_MAIN"

func TestMain(m *testing.M) {
	if demotest.AsMain(demoMainEnv) {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	dynamolocal.Main(m)
}

// summaryFile is the part of -summary-json this test reads.
type summaryFile struct {
	OK      bool `json:"ok"`
	Summary struct {
		Ended         string `json:"ended"`
		Checked       int    `json:"checked"`
		Violations    int    `json:"violations"`
		Invalidations uint64 `json:"invalidations"`
	} `json:"summary"`
	Nodes []struct {
		Name  string `json:"name"`
		Exit  string `json:"exit"`
		Final bool   `json:"final"`
		Stats *struct {
			Reads      uint64 `json:"reads"`
			Checked    int    `json:"checked"`
			Violations int    `json:"violations"`
			Fields     []struct {
				N string `json:"n"`
				V string `json:"v"`
			} `json:"fields"`
		} `json:"stats"`
	} `json:"nodes"`
}

// guardLine is the summary's reader-limit line.
var guardLine = regexp.MustCompile(`reader limit +fan-out mode: GetRecords (\d+) admitted, (\d+) refused \(LimitExceededException\), at most (\d+) readers on a shard`)

// TestFanoutDemo runs `make demo DEMO_ARGS=-fanout` small: four node
// processes, two of them bridge candidates, an embedded NATS server, and
// every DynamoDB Streams client behind the reader-limit guard (a third
// reader of a shard would be refused, and a refusal fails the run). The run
// ends on work done (-requests, -evictions), -duration is only the cap. It
// must exit 0 with no staleness violation; a candidate must have been
// elected (every node applied batches of epoch >= 1, a candidate read the
// stream, the others never did); every node must have received batches
// naming changed keys; and the guard must have admitted GetRecords calls
// from the candidates only, at most 2 per shard, and refused none.
func TestFanoutDemo(t *testing.T) {
	const nodes = 4
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	srv := dynamolocal.ForTest(t) // fails under CI=true when DynamoDB Local cannot start
	path := filepath.Join(t.TempDir(), "summary.json")
	cmd := demotest.Command(t, ctx, demoMainEnv, "-fanout", "-bridge-candidates", "2",
		"-endpoint", srv.Endpoint(), "-summary-json", path,
		"-nodes", strconv.Itoa(nodes), "-requests", "200", "-evictions", "20", "-duration", "3m", "-keys", "100",
		"-workers", "2", "-rate", "200", "-write-pct", "5", "-interval", "500ms")
	out, err := cmd.CombinedOutput()
	defer func() {
		if t.Failed() {
			t.Logf("demo output:\n%s", out)
		}
	}()
	if err != nil {
		t.Fatalf("demo failed: %v", err)
	}
	s := demotest.ReadSummary[summaryFile](t, path)
	if !s.OK || s.Summary.Ended != "requests" {
		t.Errorf("summary: ok %v, ended %q; want ok, ended on requests", s.OK, s.Summary.Ended)
	}
	if s.Summary.Violations != 0 || s.Summary.Checked == 0 {
		t.Errorf("%d staleness violations in %d reads checked; want 0 in more than 0", s.Summary.Violations, s.Summary.Checked)
	}
	if len(s.Nodes) != nodes {
		t.Fatalf("%d nodes in the summary, want %d", len(s.Nodes), nodes)
	}
	candidateReads := 0
	for i, n := range s.Nodes {
		if n.Exit != "ok" || !n.Final || n.Stats == nil {
			t.Errorf("node %s: exit %q, final stats %v", n.Name, n.Exit, n.Final)
			continue
		}
		f := map[string]string{}
		for _, kv := range n.Stats.Fields {
			f[kv.N] = kv.V
		}
		atoi := func(name string) int {
			v, err := strconv.Atoi(f[name])
			if err != nil {
				t.Errorf("node %s: field %q = %q, want a number", n.Name, name, f[name])
			}
			return v
		}
		if e := atoi("epoch"); e < 1 {
			t.Errorf("node %s: epoch %d: no batch of an elected bridge applied", n.Name, e)
		}
		if b, k := atoi("batches"), atoi("keys"); b == 0 || k == 0 {
			t.Errorf("node %s: %d batches naming %d keys received, want some of each", n.Name, b, k)
		}
		if i < 2 {
			candidateReads += atoi("GetRecords")
			if f["role"] != "leader" && f["role"] != "standby" {
				t.Errorf("candidate %s: role %q", n.Name, f["role"])
			}
		} else if f["role"] != "pod" || f["GetRecords"] != "—" {
			t.Errorf("node %s (not a candidate): role %q, GetRecords %q; want a pod that reads no stream", n.Name, f["role"], f["GetRecords"])
		}
		if n.Stats.Violations != 0 {
			t.Errorf("node %s: %d staleness violations", n.Name, n.Stats.Violations)
		}
	}
	if candidateReads == 0 {
		t.Errorf("no bridge candidate read the stream")
	}
	m := guardLine.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("output lacks the reader-limit summary line")
	}
	admitted, _ := strconv.Atoi(m[1])
	refused, _ := strconv.Atoi(m[2])
	maxReaders, _ := strconv.Atoi(m[3])
	if admitted == 0 || refused != 0 || maxReaders < 1 || maxReaders > 2 {
		t.Errorf("guard: %d GetRecords admitted, %d refused, at most %d readers on a shard; want > 0, 0, 1 or 2",
			admitted, refused, maxReaders)
	}
	readers := regexp.MustCompile(`readers \(GetRecords admitted/refused\): (.*)`).FindStringSubmatch(string(out))
	if readers == nil {
		t.Fatalf("output lacks the guard's readers")
	}
	for _, r := range strings.Split(readers[1], ", ") {
		if name, _, _ := strings.Cut(r, " "); name != "n1" && name != "n2" {
			t.Errorf("reader %q behind the guard: only the candidates n1 and n2 may read the stream", r)
		}
	}
	if !strings.Contains(string(out), "fan-out: pods read no stream") {
		t.Errorf("live view lacks the fan-out line")
	}
}

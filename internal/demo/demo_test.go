package demo

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/demo/demotest"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
)

// demoMainEnv makes the test binary behave as the demo itself, so that the
// test runs the real parent and node processes (built with -race when the
// test is) without a separate go build.
const demoMainEnv = "TIEREDCACHE_DEMO_AS_MAIN"

func TestMain(m *testing.M) {
	if demotest.AsMain(demoMainEnv) {
		os.Exit(Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	dynamolocal.Main(m)
}

// summaryFile is what -summary-json writes.
type summaryFile struct {
	OK      bool    `json:"ok"`
	Summary summary `json:"summary"`
	Nodes   []struct {
		Name  string     `json:"name"`
		Pid   int        `json:"pid"`
		Exit  string     `json:"exit"`
		Final bool       `json:"final"`
		Stats *nodeStats `json:"stats"`
	} `json:"nodes"`
}

func demoCommand(t *testing.T, ctx context.Context, summaryPath string, args ...string) *exec.Cmd {
	t.Helper()
	srv := dynamolocal.ForTest(t) // fails under CI=true when DynamoDB Local cannot start
	args = append([]string{"-endpoint", srv.Endpoint(), "-summary-json", summaryPath}, args...)
	return demotest.Command(t, ctx, demoMainEnv, args...)
}

func readSummary(t *testing.T, path string) summaryFile {
	return demotest.ReadSummary[summaryFile](t, path)
}

// checkRun asserts what every successful run must show.
func checkRun(t *testing.T, s summaryFile, nodes int, wantL1Hits bool) {
	t.Helper()
	if !s.OK {
		t.Errorf("summary says the run was not ok")
	}
	if len(s.Nodes) != nodes {
		t.Fatalf("%d nodes in the summary, want %d", len(s.Nodes), nodes)
	}
	for _, n := range s.Nodes {
		if n.Exit != "ok" || !n.Final || n.Stats == nil {
			t.Errorf("node %s: exit %q, final stats %v", n.Name, n.Exit, n.Final)
			continue
		}
		st := n.Stats
		if st.Reads == 0 {
			t.Errorf("node %s served no reads", n.Name)
		}
		if wantL1Hits && st.L1Hits == 0 {
			t.Errorf("node %s: no L1 hit in %d reads", n.Name, st.Reads)
		}
		if st.Checked == 0 {
			t.Errorf("node %s: no read was checked for staleness", n.Name)
		}
		if st.Violations != 0 {
			t.Errorf("node %s: %d staleness violations: %q", n.Name, st.Violations, st.Samples)
		}
		// No orphans: the node process is gone (reaped by the parent, which exited).
		if err := syscall.Kill(n.Pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("node %s (pid %d) still exists after the demo exited (kill 0: %v)", n.Name, n.Pid, err)
		}
	}
	if s.Summary.Violations != 0 {
		t.Errorf("%d staleness violations in total", s.Summary.Violations)
	}
}

// checkEndedOnWork asserts that a -requests run ended on its work, not on
// its -duration cap.
func checkEndedOnWork(t *testing.T, s summaryFile) {
	t.Helper()
	if s.Summary.Ended != endRequests {
		t.Errorf("the workload ended by %q, want %q: the -duration cap passed before the nodes did their -requests", s.Summary.Ended, endRequests)
	}
}

// TestDemoEndToEnd runs the demo as a user would, briefly: three node
// processes on one table, writes on every node. The run ends on work done
// (-requests, -evictions), not on the clock, so a loaded machine that serves
// a few requests a second runs longer instead of proving less; -duration is
// only the cap.
func TestDemoEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "summary.json")
	cmd := demoCommand(t, ctx, path,
		"-nodes", "3", "-requests", "300", "-evictions", "1", "-duration", "3m", "-keys", "300",
		"-workers", "4", "-rate", "400", "-write-pct", "5", "-interval", "500ms")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	s := readSummary(t, path)
	checkEndedOnWork(t, s)
	checkRun(t, s, 3, true)
	for _, n := range s.Nodes {
		if n.Stats != nil && n.Stats.requests() < 300 {
			t.Errorf("node %s made %d requests, want at least -requests 300", n.Name, n.Stats.requests())
		}
	}
	if s.Summary.Sets == 0 || s.Summary.Invalidations == 0 {
		t.Errorf("%d sets, %d stream evictions: want writes on some node to evict keys elsewhere",
			s.Summary.Sets, s.Summary.Invalidations)
	}
	for _, want := range []string{"Summary:", "0 violations"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", out)
	}
}

// TestDemoOutage runs the demo's outage mode: its own DynamoDB Local for the
// cache is stopped mid-run and resumed while the source of truth stays up.
// Reads must all succeed, writes must be refused visibly, the breaker must
// open, and the staleness checker must still find nothing. With -requests
// the outage begins after a third of the work and lasts until every node has
// felt it, so the run does not depend on how many requests fit in a window.
func TestDemoOutage(t *testing.T) {
	dynamolocal.ForTest(t) // installs DynamoDB Local; fails under CI=true when it cannot run
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "summary.json")
	cmd := demotest.Command(t, ctx, demoMainEnv, "-summary-json", path, "-nodes", "2", "-requests", "300", "-duration", "3m",
		"-outage", "1s", "-keys", "300", "-workers", "4", "-rate", "300", "-write-pct", "5", "-interval", "500ms")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	s := readSummary(t, path)
	checkEndedOnWork(t, s)
	checkRun(t, s, 2, true)
	if s.Summary.ReadErrors != 0 {
		var first []string
		for _, n := range s.Nodes {
			if n.Stats != nil && n.Stats.FirstReadErr != "" {
				first = append(first, n.Name+": "+n.Stats.FirstReadErr)
			}
		}
		t.Errorf("%d reads failed while only DynamoDB was down; first per node: %q", s.Summary.ReadErrors, first)
	}
	if s.Summary.BreakerOpens == 0 || s.Summary.L2Unavailable == 0 {
		t.Errorf("breaker opened %d times, %d writes refused: the outage was not felt",
			s.Summary.BreakerOpens, s.Summary.L2Unavailable)
	}
	if !strings.Contains(string(out), "outage ") {
		t.Errorf("output lacks the outage line:\n%s", out)
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", out)
	}
}

// TestDemoInterrupt: Ctrl-C (SIGINT to the parent) mid-run stops every node
// cleanly and still prints the summary.
func TestDemoInterrupt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "summary.json")
	cmd := demoCommand(t, ctx, path,
		"-nodes", "3", "-duration", "10m", "-keys", "300", "-workers", "2", "-rate", "200",
		"-interval", "200ms")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Plain output: a block of per-node lines every second once the workload
	// runs; interrupt after two blocks.
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	running := false
	for seen := 0; sc.Scan(); {
		out.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), " running req/s=") {
			if seen++; seen == 6 {
				running = true
				break
			}
		}
	}
	if !running {
		_ = cmd.Wait()
		t.Fatalf("the demo never reported running nodes\nstdout:\n%s\nstderr:\n%s", out.String(), stderr.String())
	}
	interrupted := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stdout)
	out.Write(rest)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("demo exited with %v after Ctrl-C\nstdout:\n%s\nstderr:\n%s", err, out.String(), stderr.String())
	}
	if d := time.Since(interrupted); d > 30*time.Second {
		t.Errorf("shutdown after Ctrl-C took %v", d)
	}
	if !strings.Contains(out.String(), "(interrupted)") {
		t.Errorf("summary does not say the run was interrupted:\n%s", out.String())
	}
	checkRun(t, readSummary(t, path), 3, false) // too short a run to promise L1 hits
}

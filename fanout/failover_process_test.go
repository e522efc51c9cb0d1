package fanout_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"

	"github.com/tieredcache/tieredcache/fanout"
	"github.com/tieredcache/tieredcache/fanout/internal/readerlimit"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/l2"
)

// childBridgeEnv, when set in the environment of this test binary, makes it
// run one hot-standby bridge candidate (childBridge) instead of the tests:
// "table|DynamoDB endpoint|Streams endpoint|NATS URL".
const childBridgeEnv = "TC_FANOUT_CHILD_BRIDGE"

// childBridge runs a bridge until stdin closes (or the process is killed),
// printing "leading" once it leads. At its first step-down it closes the
// bridge (no stream call after Close) and prints "stepped-down": a test
// then sees the deposed leader alone, not the standby it would become.
func childBridge() int {
	parts := strings.Split(os.Getenv(childBridgeEnv), "|")
	if len(parts) != 4 {
		fmt.Fprintln(os.Stderr, "child bridge: bad", childBridgeEnv)
		return 2
	}
	table, ddbURL, streamsURL, natsURL := parts[0], parts[1], parts[2], parts[3]
	cfg := dynamolocal.AWSConfig(ddbURL)
	tr, err := fanout.DialNATS(natsURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child bridge:", err)
		return 1
	}
	defer tr.Close()
	b, err := fanout.NewBridge(fanout.BridgeOptions{ID: "bridge-child", Table: table, DynamoDB: l2.NewClient(cfg),
		Streams:   invalidation.NewStreamsClient(cfg, func(o *dynamodbstreams.Options) { o.BaseEndpoint = aws.String(streamsURL) }),
		Transport: tr, HotStandby: true})
	if err == nil {
		err = b.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child bridge:", err)
		return 1
	}
	defer b.Close()
	go func() {
		for !b.Stats().Leader {
			time.Sleep(5 * time.Millisecond)
		}
		fmt.Println("leading")
		// Another take of a lease needs LeaseTTL of polling after the
		// step-down: Close comes long before.
		for b.Stats().StepDowns == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		_ = b.Close()
		fmt.Printf("stepped-down %+v\n", b.Stats())
	}()
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it
	return 0
}

// child is a bridge candidate in a separate OS process (childBridge),
// reading the stream through a proxy of the table's reader-limit guard
// (one reader for the guard, named by the proxy).
type child struct {
	cmd                  *exec.Cmd
	stdin                io.Closer
	leading, steppedDown chan struct{}
	done                 chan struct{} // closed once the process exited: err is its Wait's
	err                  error
	last                 atomic.Value // string: the last line printed
}

func startChild(t *testing.T, table, ddbEndpoint string, ns *natsServer) *child {
	t.Helper()
	proxy, stopProxy, err := guardOf(t, table).ServeProxy(ddbEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stopProxy() })
	c := &child{cmd: exec.Command(os.Args[0], "-test.run=^$"), leading: make(chan struct{}),
		steppedDown: make(chan struct{}), done: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), childBridgeEnv+"="+strings.Join([]string{table, ddbEndpoint, proxy, ns.url()}, "|"))
	c.cmd.Stderr = os.Stderr
	stdin, err := c.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.stdin = stdin
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = c.cmd.Process.Kill() // kills a stopped process too
		<-c.done
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			c.last.Store(line)
			switch {
			case line == "leading":
				close(c.leading)
			case strings.HasPrefix(line, "stepped-down"):
				close(c.steppedDown)
			}
		}
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c
}

// exit closes the child's stdin and returns how it exited.
func (c *child) exit(t *testing.T) error {
	t.Helper()
	_ = c.stdin.Close()
	c.await(t, c.done, "exit")
	return c.err
}

func (c *child) await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(60 * time.Second):
		t.Fatalf("the child bridge did not %s within 60s", what)
	}
}

// reader returns the guard's counters of the child's reads (the only
// reader the guard knows by name: the in-process bridges are not).
func childReader(t *testing.T, g *readerlimit.Guard) readerlimit.ReaderStats {
	t.Helper()
	named := g.Named()
	if len(named) != 1 {
		t.Fatalf("%d named readers behind the proxy, want the child alone: %+v", len(named), named)
	}
	var r readerlimit.ReaderStats
	for _, r = range named {
	}
	return r
}

// TestFailoverKillsLeaderProcess: the leading bridge runs in a separate OS
// process (this test binary, re-executed), reading the stream through a
// proxy that counts it as a reader for the same reader-limit guard as the
// in-process hot standby. The test kills it with SIGKILL in the middle of
// a read and write workload on four pods: the hot standby takes over, the
// pods trust again, and the history checker finds no read staler than T
// among at least 10^4.
func TestFailoverKillsLeaderProcess(t *testing.T) {
	r := startChildFailover(t)
	pods, taps, g, c, b2, epoch, w := r.pods, r.taps, r.guard, r.child, r.standby, r.epoch, r.workload
	killed := time.Now()
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bridge-2 to lead", func() bool { return b2.Stats().Leader })
	took := time.Since(killed)
	s2 := b2.Stats()
	if s2.Epoch <= epoch {
		t.Fatalf("takeover epoch %d, old %d: want higher", s2.Epoch, epoch)
	}
	waitFor(t, "every pod trusted on the new epoch", func() bool {
		for _, p := range pods {
			if p.src.PodStats().Epoch != s2.Epoch || !trusted(p)() {
				return false
			}
		}
		return true
	})
	t.Logf("leader process killed: bridge-2 led after %v, every pod trusted on epoch %d after %v (T = %v, 2T = %v)",
		took, s2.Epoch, time.Since(killed), fanout.DefaultStalenessBound, 2*fanout.DefaultStalenessBound)
	for w.reads.Load() < minCheckedReads {
		w.awaitReads(t, minCheckedReads/10)
	}
	w.awaitReads(t, minCheckedReads/5)
	w.finish(t)
	for i, tp := range taps {
		tp.check(t, i)
	}
	if st, cr := g.Stats(), childReader(t, g); st.Refused != 0 || st.MaxReaders != 2 || cr.Admitted == 0 {
		t.Fatalf("reader-limit guard: %+v, child %+v; want the child's reads counted, two readers, none refused", st, cr)
	}
	t.Logf("guard: %+v; child reader %+v", g.Stats(), childReader(t, g))
}

// childFailover is the set-up of the failover tests whose leader is a child
// process: four tapped pods under a workload, the table's reader-limit
// guard, the child leading, and bridge-2 reading as its hot standby.
type childFailover struct {
	pods     []*pod
	taps     []*tap
	guard    *readerlimit.Guard
	child    *child
	standby  *fanout.Bridge
	epoch    uint64 // the child's, as the pods saw it before the failover
	workload *workload
}

// startChildFailover starts it all, and returns once the workload has made
// a third of minCheckedReads.
func startChildFailover(t *testing.T) childFailover {
	ddb := dynamolocal.ForTest(t)
	cfg := dynamolocal.AWSConfig(ddb.Endpoint())
	table := dynamolocal.TableName(t)
	ns := startNATS(t)
	pods, taps := tappedPods(t, cfg, table, ns, 4) // the first creates the table
	g := guardOf(t, table)
	c := startChild(t, table, ddb.Endpoint(), ns)
	c.await(t, c.leading, "lead")
	b2 := hotBridge(t, cfg, table, "bridge-2", dial(t, ns))
	waitFor(t, "bridge-2 to read as hot standby", func() bool { return b2.Stats().Standby && b2.Stats().GetRecords > 0 })
	waitFor(t, "the pods trusted", allTrusted(pods))
	r := childFailover{pods: pods, taps: taps, guard: g, child: c, standby: b2, epoch: pods[0].src.PodStats().Epoch}
	r.workload = startWorkload(t, pods)
	r.workload.awaitReads(t, minCheckedReads/3)
	return r
}

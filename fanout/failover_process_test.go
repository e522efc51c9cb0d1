package fanout_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"

	"github.com/tieredcache/tieredcache/fanout"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/l2"
)

// childBridgeEnv, when set in the environment of this test binary, makes it
// run one hot-standby bridge candidate (childBridge) instead of the tests:
// "table|DynamoDB endpoint|Streams endpoint|NATS URL".
const childBridgeEnv = "TC_FANOUT_CHILD_BRIDGE"

// childBridge runs a bridge until stdin closes (or the process is killed),
// printing "leading" once it leads.
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
			time.Sleep(10 * time.Millisecond)
		}
		fmt.Println("leading")
	}()
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it
	return 0
}

// TestFailoverKillsLeaderProcess: the leading bridge runs in a separate OS
// process (this test binary, re-executed), reading the stream through a
// proxy that counts it as a reader for the same reader-limit guard as the
// in-process hot standby. The test kills it with SIGKILL in the middle of
// a read and write workload on four pods: the hot standby takes over, the
// pods trust again, and the history checker finds no read staler than T
// among at least 10^4.
func TestFailoverKillsLeaderProcess(t *testing.T) {
	ddb := dynamolocal.ForTest(t)
	cfg := dynamolocal.AWSConfig(ddb.Endpoint())
	table := dynamolocal.TableName(t)
	ns := startNATS(t)
	pods := make([]*pod, 4)
	for i := range pods {
		pods[i] = newPod(t, cfg, table, dial(t, ns)) // the first creates the table
	}
	g := guardOf(t, table)
	proxy, stopProxy, err := g.ServeProxy(ddb.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stopProxy() })

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childBridgeEnv+"="+strings.Join([]string{table, ddb.Endpoint(), proxy, ns.url()}, "|"))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		<-exited
	})
	leading := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "leading" {
				close(leading)
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case <-leading:
	case <-time.After(60 * time.Second):
		t.Fatal("the child bridge did not lead within 60s")
	}
	b2 := hotBridge(t, cfg, table, "bridge-2", dial(t, ns))
	waitFor(t, "bridge-2 to read as hot standby", func() bool { return b2.Stats().Standby && b2.Stats().GetRecords > 0 })
	waitFor(t, "the pods trusted", allTrusted(pods))
	epoch := pods[0].src.PodStats().Epoch

	w := startWorkload(t, pods)
	w.awaitReads(t, minCheckedReads/3)
	killed := time.Now()
	if err := cmd.Process.Kill(); err != nil {
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
	if st := g.Stats(); st.Refused != 0 || st.MaxReaders != 2 || g.Reader(1).Admitted == 0 {
		t.Fatalf("reader-limit guard: %+v, child %+v; want the child's reads counted, two readers, none refused", st, g.Reader(1))
	}
	t.Logf("guard: %+v; child reader %+v", g.Stats(), g.Reader(1))
}

// Command demo is the tieredcache demo (package internal/demo of the core
// module) in fan-out mode: `make demo DEMO_ARGS="-fanout -nodes 20"` runs it.
//
// With -fanout the parent starts an embedded NATS server on a free loopback
// port, and each node process's cache takes its invalidations from a
// fanout.Pod subscribed to it instead of reading the stream. The first
// -bridge-candidates nodes also run a fanout.Bridge candidate: they elect a
// leader through the lease item in the cache table, and only the leader reads
// the stream and publishes batches.
//
// Every node's DynamoDB Streams client, in either mode, goes through a
// reader-limit guard the parent runs (an HTTP proxy in front of DynamoDB
// Local, fanout/internal/readerlimit), which refuses a third concurrent
// reader of a shard with LimitExceededException as AWS does. The live view
// shows GetRecords calls per shard per second and the readers of each shard,
// and per node its role (leader, standby, pod), the epoch and sequence number
// of the last batch it applied, and the age of its watermark. In fan-out
// mode a refused call fails the run. Without -fanout the nodes read the
// stream directly, so that with more than two nodes the guard shows the
// refusals fan-out avoids.
//
// It lives in the fanout module so that the core module does not depend on
// NATS; every flag of the core demo works unchanged (-h lists them). It
// serves no /metrics (otel/cmd/demo does).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/tieredcache/tieredcache/fanout"
	"github.com/tieredcache/tieredcache/fanout/internal/readerlimit"
	"github.com/tieredcache/tieredcache/internal/demo"
	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

// The parent tells its nodes where things are through their environment.
const (
	envStreams    = "TIEREDCACHE_DEMO_STREAMS_PROXY" // the reader-limit guard's URL
	envNATS       = "TIEREDCACHE_DEMO_NATS"          // fan-out: the NATS server's URL
	envCandidates = "TIEREDCACHE_DEMO_CANDIDATES"    // fan-out: bridge candidates, comma-separated
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the demo. The parent re-executes this binary for each node, which
// runs this same function with the hidden -child flag.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var (
		fan        bool
		candidates int
		n          nodeSide // this process's node (node processes only)
	)
	code := demo.Run(args, stdin, stdout, stderr,
		demo.WithFlags(func(fs *flag.FlagSet) {
			fs.BoolVar(&fan, "fanout", false, "fan-out mode: nodes take invalidations from a bridge over an embedded NATS server instead of reading the stream")
			fs.IntVar(&candidates, "bridge-candidates", 2, "with -fanout: how many nodes (n1, n2, ...) run a bridge candidate (one leads, the others stand by)")
		}),
		demo.WithParent(func(ctx context.Context, s demo.ParentSetup) (*demo.ParentExt, error) {
			return startParent(s, fan, candidates)
		}),
		demo.WithCacheOptions(n.cacheOptions),
		demo.WithNodeHook(n.hook),
		demo.WithNodeStatus(n.status),
	)
	n.close()
	return code
}

// parentSide is the parent's part: the NATS server and the reader-limit
// guard.
type parentSide struct {
	fan   bool
	guard *readerlimit.Guard
	srv   *http.Server
	done  chan struct{}
	ns    *server.Server // fan-out only

	mu     sync.Mutex
	prev   map[string]readerlimit.ShardStats
	prevAt time.Time
	begin  time.Time
}

func startParent(s demo.ParentSetup, fan bool, candidates int) (*demo.ParentExt, error) {
	if fan && (candidates < 1 || candidates > len(s.Nodes)) {
		return nil, fmt.Errorf("-bridge-candidates must be between 1 and -nodes (%d)", len(s.Nodes))
	}
	p := &parentSide{fan: fan, guard: readerlimit.New(0, 0), done: make(chan struct{}), begin: time.Now()}
	h, err := p.guard.Proxy(s.Endpoint)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(p.done)
		_ = p.srv.Serve(ln) // ErrServerClosed once closed
	}()
	env := []string{envStreams + "=http://" + ln.Addr().String()}
	if fan {
		ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
		if err != nil {
			p.close()
			return nil, fmt.Errorf("nats server: %w", err)
		}
		go ns.Start()
		if !ns.ReadyForConnections(30 * time.Second) {
			ns.Shutdown()
			p.close()
			return nil, errors.New("nats server not ready")
		}
		p.ns = ns
		env = append(env, envNATS+"="+ns.ClientURL(), envCandidates+"="+strings.Join(s.Nodes[:candidates], ","))
	}
	return &demo.ParentExt{Env: env, Status: p.status, Summary: p.summary, Err: p.err, Close: p.close}, nil
}

func (p *parentSide) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		_ = p.srv.Close()
	}
	<-p.done
	if p.ns != nil {
		p.ns.Shutdown()
		p.ns.WaitForShutdown()
	}
}

// status is the live view's lines: the mode, then GetRecords calls per shard
// per second since the last drawing, and each shard's readers.
func (p *parentSide) status() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	shards := p.guard.Shards()
	st := p.guard.Stats()
	var lines []string
	if p.fan {
		lines = append(lines, "fan-out: pods read no stream; the elected bridge publishes batches over NATS "+p.ns.ClientURL()+" (embedded)")
	} else {
		lines = append(lines, "direct mode: every node reads the stream itself")
	}
	line := fmt.Sprintf("reader-limit guard (at most %d readers per shard, else LimitExceededException): refused %d · max readers on a shard %d",
		readerlimit.DefaultLimit, st.Refused, st.MaxReaders)
	for _, k := range sortedKeys(shards) {
		cur := shards[k]
		rate := 0.0
		if old, ok := p.prev[k]; ok && now.After(p.prevAt) {
			rate = float64(cur.Admitted+cur.Refused-old.Admitted-old.Refused) / now.Sub(p.prevAt).Seconds()
		} else if now.After(p.begin) {
			rate = float64(cur.Admitted+cur.Refused) / now.Sub(p.begin).Seconds()
		}
		line += fmt.Sprintf(" · shard …%s: %.1f GetRecords/s, %d reader(s)", shortShard(k), rate, cur.Readers)
	}
	p.prev, p.prevAt = shards, now
	return append(lines, line)
}

// summary is the guard's totals.
func (p *parentSide) summary() []string {
	st := p.guard.Stats()
	el := time.Since(p.begin).Seconds()
	var per []string
	for _, k := range sortedKeys(p.guard.Shards()) {
		s := p.guard.Shards()[k]
		per = append(per, fmt.Sprintf("shard …%s %d calls (%.1f/s)", shortShard(k), s.Admitted+s.Refused, float64(s.Admitted+s.Refused)/el))
	}
	mode := "direct"
	if p.fan {
		mode = "fan-out"
	}
	named := p.guard.Named()
	names := make([]string, 0, len(named))
	for name := range named {
		names = append(names, name)
	}
	sort.Strings(names)
	var readers []string
	for _, name := range names {
		r := named[name]
		readers = append(readers, fmt.Sprintf("%s %d/%d", name, r.Admitted, r.Refused))
	}
	return []string{
		fmt.Sprintf("reader limit    %s mode: GetRecords %d admitted, %d refused (LimitExceededException), at most %d readers on a shard; %s",
			mode, st.Admitted, st.Refused, st.MaxReaders, strings.Join(per, ", ")),
		"                readers (GetRecords admitted/refused): " + strings.Join(readers, ", "),
	}
}

// err fails a fan-out run whose readers the guard had to refuse.
func (p *parentSide) err() error {
	if st := p.guard.Stats(); p.fan && st.Refused > 0 {
		return fmt.Errorf("fan-out: the reader-limit guard refused %d GetRecords calls", st.Refused)
	}
	return nil
}

func sortedKeys(m map[string]readerlimit.ShardStats) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// shortShard is the end of a shard's id, enough to tell shards apart.
func shortShard(k string) string {
	_, id, _ := strings.Cut(k, "|")
	if len(id) > 8 {
		id = id[len(id)-8:]
	}
	return id
}

// nodeSide is a node process's part: its Streams client behind the guard,
// and in fan-out mode its Pod, its transport and maybe a bridge candidate.
type nodeSide struct {
	name   string
	cache  *tiered.Cache[string]
	tr     *fanout.NATS   // fan-out
	pod    *fanout.Pod    // fan-out
	bridge *fanout.Bridge // fan-out, on a candidate
}

// cacheOptions puts the node's Streams client behind the guard and, in
// fan-out mode, replaces its stream consumer with a Pod.
func (n *nodeSide) cacheOptions(node string, o *tiered.Options[string]) error {
	n.name = node
	proxy := os.Getenv(envStreams)
	if proxy == "" {
		return fmt.Errorf("%s not set: run the demo's parent, not a node", envStreams)
	}
	streams := invalidation.NewStreamsClient(*o.AWS, readerlimit.Named(node),
		func(so *dynamodbstreams.Options) { so.BaseEndpoint = aws.String(proxy) })
	natsURL := os.Getenv(envNATS)
	if natsURL == "" { // direct mode
		o.Streams = streams
		return nil
	}
	tr, err := fanout.DialNATS(natsURL)
	if err != nil {
		return err
	}
	n.tr = tr
	if n.pod, err = fanout.NewPod(fanout.PodOptions{Transport: tr, Subject: fanout.DefaultSubject(o.Table)}); err != nil {
		return err
	}
	o.Invalidation = n.pod
	for _, c := range strings.Split(os.Getenv(envCandidates), ",") {
		if c == node {
			n.bridge, err = fanout.NewBridge(fanout.BridgeOptions{
				ID: node, Table: o.Table, StalenessBound: o.StalenessBound, Transport: tr,
				DynamoDB: l2.NewClient(*o.AWS, l2.WithLogger(o.Logger)), Streams: streams, Logger: o.Logger,
			})
			return err
		}
	}
	return nil
}

// hook starts the bridge candidate once the cache is built; it stops before
// the cache closes.
//
// In fan-out mode it then waits until the Pod trusts L1 (a bridge was
// elected and its first message arrived), so that the node reports ready, and
// the workload starts, with invalidation working: a pod without trust serves
// only young L1 entries, and twenty such pods at once load DynamoDB Local
// more than the run itself.
func (n *nodeSide) hook(cache *tiered.Cache[string], _ string) (string, func(), error) {
	n.cache = cache
	stop := func() {}
	if n.bridge != nil {
		if err := n.bridge.Start(); err != nil {
			return "", nil, err
		}
		stop = func() { _ = n.bridge.Close() }
	}
	if n.pod == nil {
		return "", stop, nil
	}
	// The Pod reports trust only through Stats: poll it.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(trustTimeout)
	for !n.pod.Stats().Healthy {
		select {
		case <-tick.C:
		case <-deadline:
			stop()
			return "", nil, fmt.Errorf("fan-out: no trusted message from a bridge within %v", trustTimeout)
		}
	}
	return "", stop, nil
}

// trustTimeout bounds a node's wait for its first trusted message: the
// candidates' election, their stream consumer's start, and one batch.
const trustTimeout = time.Minute

// status is the node's fields in the live view.
func (n *nodeSide) status() []demo.Field {
	if n.pod == nil { // direct mode
		if n.cache == nil {
			return nil
		}
		st := n.cache.Stats().Stream
		return []demo.Field{{Name: "reader-limit hits", Value: strconv.FormatUint(st.ReaderLimitHits, 10)},
			{Name: "reader limited", Value: strconv.FormatBool(st.ReaderLimited)}}
	}
	role := "pod"
	getRecords := "—"
	if n.bridge != nil {
		b := n.bridge.Stats()
		role = "standby"
		if b.Leader {
			role = "leader"
		}
		getRecords = strconv.FormatInt(b.GetRecords, 10)
	}
	ps := n.pod.PodStats()
	src := n.pod.Stats()
	wm := "—"
	if src.Lag > 0 {
		wm = strconv.FormatInt(src.Lag.Milliseconds(), 10) + " ms"
	}
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	return []demo.Field{
		{Name: "role", Value: role},
		{Name: "epoch", Value: strconv.FormatUint(ps.Epoch, 10)},
		{Name: "seq", Value: strconv.FormatUint(ps.Seq, 10)},
		{Name: "watermark age", Value: wm},
		{Name: "trusted", Value: strconv.FormatBool(src.Healthy)},
		{Name: "batches", Value: i(ps.Messages)},
		{Name: "keys", Value: i(ps.Keys)},
		{Name: "gaps", Value: i(ps.Gaps)},
		{Name: "epoch changes", Value: i(ps.EpochChanges)},
		{Name: "reconnects", Value: i(ps.Reconnects)},
		{Name: "GetRecords", Value: getRecords},
	}
}

// close releases the transport once the cache (and its Pod) is closed.
func (n *nodeSide) close() {
	if n.bridge != nil {
		_ = n.bridge.Close() // a node that failed before its hook ran
	}
	if n.tr != nil {
		_ = n.tr.Close()
	}
}

package fanout_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/tieredcache/tieredcache/fanout"
	"github.com/tieredcache/tieredcache/fanout/internal/readerlimit"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

// TestMain runs the tests, stops DynamoDB Local and checks for leaked
// goroutines (goleak, in dynamolocal.Main). Started by a test as a child
// process, it runs a bridge instead (see childBridge).
func TestMain(m *testing.M) {
	if os.Getenv(childBridgeEnv) != "" {
		os.Exit(childBridge())
	}
	dynamolocal.Main(m)
}

// natsServer is an embedded NATS server on loopback that can be stopped and
// started again on the same port.
type natsServer struct {
	t    testing.TB
	port int
	tls  *tls.Config // nil: plain TCP
	ns   *server.Server
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	s := &natsServer{t: t, port: -1}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *natsServer) start() {
	s.t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: s.port, NoLog: true, NoSigs: true,
		TLSConfig: s.tls, TLSTimeout: 10})
	if err != nil {
		s.t.Fatalf("nats server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		s.t.Fatalf("nats server not ready")
	}
	s.ns = ns
	s.port = ns.Addr().(*net.TCPAddr).Port
}

func (s *natsServer) stop() {
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		s.ns = nil
	}
}

func (s *natsServer) url() string {
	if s.tls != nil {
		return "tls://127.0.0.1:" + itoa(s.port)
	}
	return "nats://127.0.0.1:" + itoa(s.port)
}

func itoa(n int) string { return (&net.TCPAddr{Port: n}).String()[1:] }

func dial(t testing.TB, s *natsServer) *fanout.NATS {
	t.Helper()
	tr, err := fanout.DialNATS(s.url())
	if err != nil {
		t.Fatalf("DialNATS: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// pod is one cache in fan-out mode.
type pod struct {
	*tiered.Cache[string]
	src    *fanout.Pod
	events chan string // keys invalidated
}

// newPod builds a pod; opts may change its options (pod options first: the
// cache's Invalidation is set from them).
func newPod(t testing.TB, cfg aws.Config, table string, tr fanout.Transport,
	opts ...func(*tiered.Options[string], *fanout.PodOptions)) *pod {
	t.Helper()
	var to tiered.Options[string]
	po := fanout.PodOptions{Transport: tr, Subject: fanout.DefaultSubject(table)}
	for _, f := range opts {
		f(&to, &po)
	}
	src, err := fanout.NewPod(po)
	if err != nil {
		t.Fatal(err)
	}
	p := &pod{src: src, events: make(chan string, 1<<16)}
	to = tiered.Options[string]{ReplaceOnChange: to.ReplaceOnChange,
		Table: table, CreateTable: true, AWS: &cfg, CallTimeout: 5 * time.Second,
		Invalidation: src,
		OnInvalidate: func(key string, _ time.Time) {
			select {
			case p.events <- key:
			default:
			}
		},
	}
	c, err := tiered.New(testContext(t), to)
	if err != nil {
		t.Fatalf("tiered.New: %v", err)
	}
	p.Cache = c
	t.Cleanup(func() { _ = c.Close() })
	return p
}

// guards holds each table's reader-limit guard: every bridge candidate of a
// table reads its stream through the same guard, so a design that lets a
// third reader at a shard fails the test that runs it.
var guards sync.Map // table -> *readerlimit.Guard

// guardOf returns table's guard; the first call registers a cleanup (run
// after the bridges', which are registered later) that fails the test if
// the guard refused any read, or saw a read with an iterator it never
// returned (a read it could not count).
func guardOf(t testing.TB, table string) *readerlimit.Guard {
	g, loaded := guards.LoadOrStore(table, readerlimit.New(0, 0))
	if !loaded {
		t.Cleanup(func() {
			guards.Delete(table)
			st := g.(*readerlimit.Guard).Stats()
			if st.Refused != 0 {
				t.Errorf("the reader-limit guard refused %d GetRecords calls (more than %d readers of a shard): %+v",
					st.Refused, readerlimit.DefaultLimit, st)
			}
			// An iterator the guard never saw returned is a read it could
			// not count: the guard would miss a third reader.
			if st.Unknown != 0 {
				t.Errorf("the reader-limit guard saw %d GetRecords calls with an iterator it never returned: %+v",
					st.Unknown, st)
			}
		})
	}
	return g.(*readerlimit.Guard)
}

func newBridge(t testing.TB, cfg aws.Config, table, id string, tr fanout.Transport, ddb fanout.TableAPI,
	opts ...func(*fanout.BridgeOptions)) *fanout.Bridge {
	t.Helper()
	if ddb == nil {
		ddb = l2.NewClient(cfg)
	}
	o := fanout.BridgeOptions{ID: id, Table: table, DynamoDB: ddb,
		Streams: invalidation.NewStreamsClient(cfg, guardOf(t, table).Options), Transport: tr}
	for _, f := range opts {
		f(&o)
	}
	b, err := fanout.NewBridge(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// awaitCond polls cond until it holds or d passes: the bridge and the pods
// change state on their own clocks, so a state is what can be awaited.
func awaitCond(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !awaitCond(60*time.Second, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func trusted(p *pod) func() bool { return func() bool { return !p.Stats().Stream.Degraded } }

// awaitEvent waits until p invalidated key, and returns when.
func (p *pod) awaitEvent(t testing.TB, key string) time.Time {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case k := <-p.events:
			if k == key {
				return time.Now()
			}
		case <-timeout:
			t.Fatalf("no invalidation of %q within 30s; stream %+v; pod %+v", key, p.Stats().Stream, p.src.PodStats())
		}
	}
}

// awaitDrop waits until p invalidated key or flushed its whole L1 (a flush
// counted after flushes), and returns when and whether it was a flush. A
// bridge that loses its lease under load (say, a renewal slower than the
// TTL) comes back with a new epoch from LATEST: the pods flush rather than
// evict what changed meanwhile. The Pod counts a flush under the lock it
// holds while flushing, so once counted, the L1 is empty.
func (p *pod) awaitDrop(t testing.TB, key string, flushes int64) (time.Time, bool) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case k := <-p.events:
			if k == key {
				return time.Now(), false
			}
		case <-tick.C:
			if p.src.PodStats().Flushes > flushes {
				return time.Now(), true
			}
		case <-timeout:
			t.Fatalf("no invalidation of %q within 30s; stream %+v; pod %+v", key, p.Stats().Stream, p.src.PodStats())
		}
	}
}

// crossWrite fills key on b, writes it on a, and checks that b drops it (by
// an eviction or a flush) and then serves the new value; it returns the ack
// -> drop delay and whether the drop was a flush.
func crossWrite(t testing.TB, a, b *pod, key, val string) (time.Duration, bool) {
	t.Helper()
	ctx := testContext(t)
	if _, err := b.GetOrLoad(ctx, key, func(context.Context, string) (string, error) { return "old", nil }); err != nil {
		t.Fatalf("fill on b: %v", err)
	}
	flushes := b.src.PodStats().Flushes
	if err := a.Set(ctx, key, val); err != nil {
		t.Fatalf("Set on a: %v", err)
	}
	acked := time.Now()
	evicted, flushed := b.awaitDrop(t, key, flushes)
	if v, err := b.Get(ctx, key); err != nil || v != val {
		t.Fatalf("b serves %q, %v after the eviction; want %q", v, err, val)
	}
	return evicted.Sub(acked), flushed
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

package fanout_test

import (
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/tieredcache/tieredcache/fanout"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

// scalePods is the number of simulated pods of BenchmarkFanOut200
// (TC_FANOUT_PODS overrides it, e.g. for a quick look at 20).
func scalePods(b *testing.B) int {
	if s := os.Getenv("TC_FANOUT_PODS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2 {
			b.Fatalf("TC_FANOUT_PODS=%q: want an integer >= 2", s)
		}
		return n
	}
	return 200
}

// scaleWriteEvery paces the benchmark's writes (50 writes/s, rotating over
// the pods as writers).
const scaleWriteEvery = 20 * time.Millisecond

// BenchmarkFanOut200: 200 pods (tiered caches in one process, each with its
// own NATS connection, in fan-out mode) on one DynamoDB Local table, one
// bridge (behind the reader-limit guard), an embedded NATS server. Each
// iteration is one Set on one pod (writers rotate), paced every 20 ms; the
// benchmark measures, for every write and every other pod, the delay from
// the Set's acknowledgement to that pod's eviction of the key (its
// OnInvalidate), and reports p50/p99/max in ms, and what crossed the broker
// per changed key: messages and payload bytes published, and delivered (the
// NATS server's own counters, heartbeats included).
//
// Sub-benchmarks: keys (KEYS_ONLY stream, keys in messages), versions
// (NEW_IMAGE stream and ReplaceOnChange pods: each key travels with its
// version and the writer's proof, so the writing pod keeps its own entry),
// hashes (KEYS_ONLY, 64-bit key hashes instead of keys).
//
// Run with a fixed count: make bench-fanout (-benchtime 300x); the 200 pods
// are built for each run of the function, so a time-based -benchtime repeats
// the setup.
func BenchmarkFanOut200(b *testing.B) {
	for _, mode := range []struct {
		name    string
		replace bool
		hashes  bool
	}{
		{name: "keys"},
		{name: "versions", replace: true},
		{name: "hashes", hashes: true},
	} {
		b.Run(mode.name, func(b *testing.B) {
			scaleRun(b, scalePods(b), mode.replace, mode.hashes)
		})
	}
}

// scaleRecorder collects eviction times per write.
type scaleRecorder struct {
	pods    int
	acked   []atomic.Int64 // per write: ack time (unix ns); 0 not yet
	evicted [][]int64      // per write, per pod: eviction time (unix ns); 0 none
	left    []atomic.Int32 // per write: pods still to evict (writer excluded)
	writer  []int          // per write: the writing pod
	own     atomic.Int64   // evictions of a write on its own writer
	done    chan int       // write indexes whose evictions are all in
}

func (r *scaleRecorder) evict(pod int, key string) {
	if len(key) < 2 || key[0] != 'k' {
		return
	}
	i, err := strconv.Atoi(key[1:])
	if err != nil || i >= len(r.evicted) {
		return
	}
	if pod == r.writer[i] {
		r.own.Add(1)
		return
	}
	if atomic.LoadInt64(&r.evicted[i][pod]) != 0 {
		return
	}
	atomic.StoreInt64(&r.evicted[i][pod], time.Now().UnixNano())
	if r.left[i].Add(-1) == 0 {
		r.done <- i
	}
}

func scaleRun(b *testing.B, n int, replace, hashes bool) {
	cfg := dynamolocal.AWSConfig(dynamolocal.ForTest(b).Endpoint())
	table := dynamolocal.TableName(b)
	ns := startNATS(b)
	writes := b.N
	rec := &scaleRecorder{pods: n, acked: make([]atomic.Int64, writes), evicted: make([][]int64, writes),
		left: make([]atomic.Int32, writes), writer: make([]int, writes), done: make(chan int, writes)}
	for i := range writes {
		rec.evicted[i] = make([]int64, n)
		rec.left[i].Store(int32(n - 1))
		rec.writer[i] = i % n
	}
	ddb := l2.NewClient(cfg)
	pods := make([]*tiered.Cache[string], n)
	srcs := make([]*fanout.Pod, n)
	for i := range n {
		src, err := fanout.NewPod(fanout.PodOptions{Transport: dial(b, ns), Subject: fanout.DefaultSubject(table),
			KeyHashes: hashes})
		if err != nil {
			b.Fatal(err)
		}
		c, err := tiered.New(testContext(b), tiered.Options[string]{
			Table: table, CreateTable: i == 0, AWS: &cfg, DynamoDB: ddb, CallTimeout: 5 * time.Second,
			L1MaxBytes: 1 << 20, Invalidation: src, ReplaceOnChange: replace,
			OnInvalidate: func(key string, _ time.Time) { rec.evict(i, key) },
		})
		if err != nil {
			b.Fatalf("tiered.New (pod %d): %v", i, err)
		}
		b.Cleanup(func() { _ = c.Close() })
		pods[i], srcs[i] = c, src
	}
	// A probe subscriber (one more connection) records when each key's
	// message reached this process: ack->probe is the bridge's and the
	// broker's part of ack->evict.
	probe := make([]atomic.Int64, writes)
	byHash := make(map[uint64]int, writes)
	for i := range writes {
		byHash[l2.KeyHash("", "k"+strconv.Itoa(i))] = i
	}
	unsub, err := dial(b, ns).Subscribe(fanout.DefaultSubject(table), func(data []byte) {
		at := time.Now().UnixNano()
		m, err := fanout.DecodeMessage(data)
		if err != nil {
			return
		}
		for _, h := range m.Hashes {
			if i, ok := byHash[h]; ok {
				probe[i].CompareAndSwap(0, at)
			}
		}
		for _, k := range m.Keys {
			if i, err := strconv.Atoi(k[strings.LastIndexByte(k, '#')+2:]); err == nil && i < writes {
				probe[i].CompareAndSwap(0, at)
			}
		}
	}, func(fanout.ConnState) {})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(unsub)
	br := scaleBridge(b, cfg, table, dial(b, ns), hashes)
	waitFor(b, "the bridge to lead", func() bool { return br.Stats().Leader })
	waitFor(b, "every pod trusted", func() bool {
		for _, c := range pods {
			if c.Stats().Stream.Degraded {
				return false
			}
		}
		return true
	})
	var flushes0 int64
	for _, s := range srcs {
		flushes0 += s.PodStats().Flushes
	}
	v0, _ := ns.ns.Varz(nil)
	pub0 := br.Stats()
	ctx := testContext(b)

	b.ResetTimer()
	tick := time.NewTicker(scaleWriteEvery)
	var (
		wg      sync.WaitGroup
		setErrs atomic.Int64
		setErr  atomic.Value
	)
	for i := range writes {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pods[rec.writer[i]].Set(ctx, "k"+strconv.Itoa(i), "v"); err != nil {
				// A Set that times out on a loaded machine is left out
				// (counted), whether or not it landed.
				setErrs.Add(1)
				setErr.Store(err)
				return
			}
			rec.acked[i].Store(time.Now().UnixNano())
		}()
	}
	tick.Stop()
	wg.Wait()
	if err, _ := setErr.Load().(error); err != nil {
		b.Logf("%d Sets failed, left out; last: %v", setErrs.Load(), err)
		if setErrs.Load() > int64(writes)/10 {
			b.Fatalf("%d of %d Sets failed", setErrs.Load(), writes)
		}
	}
	complete := 0
	timeout := time.After(30 * time.Second)
wait:
	for complete < writes-int(setErrs.Load()) {
		select {
		case i := <-rec.done:
			if rec.acked[i].Load() != 0 {
				complete++
			}
		case <-timeout:
			break wait
		}
	}
	b.StopTimer()
	v1, _ := ns.ns.Varz(nil)
	pub1 := br.Stats()

	var flushes int64
	var why fanout.PodStats
	for _, s := range srcs {
		ps := s.PodStats()
		flushes += ps.Flushes
		why.Gaps += ps.Gaps
		why.EpochChanges += ps.EpochChanges
		why.Reconnects += ps.Reconnects
		why.BridgeFlushes += ps.BridgeFlushes
		why.Undecodable += ps.Undecodable
	}
	flushes -= flushes0
	lags := make([]float64, 0, writes*(n-1))
	missed := 0
	for i := range writes {
		ack := rec.acked[i].Load()
		if ack == 0 {
			continue // its Set failed
		}
		for p := range n {
			if p == rec.writer[i] {
				continue
			}
			e := atomic.LoadInt64(&rec.evicted[i][p])
			if e == 0 {
				missed++
				continue
			}
			lags = append(lags, float64(e-ack)/1e6)
		}
	}
	if missed > 0 && flushes == 0 {
		b.Fatalf("%d of %d evictions never came, and no pod flushed", missed, writes*(n-1))
	}
	if len(lags) == 0 {
		b.Fatalf("no eviction measured (%d flushes)", flushes)
	}
	sort.Float64s(lags)
	var probes []float64
	for i := range writes {
		if p := probe[i].Load(); p != 0 && rec.acked[i].Load() != 0 {
			probes = append(probes, float64(p-rec.acked[i].Load())/1e6)
		}
	}
	sort.Float64s(probes)
	if len(probes) > 0 {
		b.ReportMetric(probes[len(probes)/2], "probe-p50-ms")
		b.ReportMetric(probes[min(len(probes)-1, len(probes)*99/100)], "probe-p99-ms")
	}
	q := func(p float64) float64 { return lags[min(len(lags)-1, int(float64(len(lags))*p))] }
	w := float64(writes)
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(lags[len(lags)-1], "max-ms")
	b.ReportMetric(float64(v1.InBytes-v0.InBytes)/w, "pub-B/key")
	b.ReportMetric(float64(v1.OutBytes-v0.OutBytes)/w, "deliv-B/key")
	b.ReportMetric(float64(v1.InMsgs-v0.InMsgs)/w, "pub-msgs/key")
	b.ReportMetric(float64(v1.OutMsgs-v0.OutMsgs)/w, "deliv-msgs/key")
	b.ReportMetric(float64(rec.own.Load())/w, "own-evict/key")
	b.ReportMetric(float64(missed), "missed")
	b.ReportMetric(float64(flushes), "flushes")
	b.ReportMetric(float64(setErrs.Load()), "set-errors")
	b.Logf("%d pods, %d writes (%d complete): ack->evict p50 %.1f ms, p99 %.1f ms, max %.1f ms over %d evictions; "+
		"%d missed, %d pod flushes (gaps %d, epoch changes %d, reconnects %d, bridge flushes %d); "+
		"bridge: %d messages, %d keys, %d takeovers; slow consumers %d; own evictions %d",
		n, writes, complete, q(0.5), q(0.99), lags[len(lags)-1], len(lags), missed, flushes,
		why.Gaps, why.EpochChanges, why.Reconnects, why.BridgeFlushes,
		pub1.Published-pub0.Published, pub1.Keys-pub0.Keys, pub1.Takeovers, v1.SlowConsumers, rec.own.Load())
}

// scaleBridge starts the one bridge of the benchmark, behind the table's
// reader-limit guard.
func scaleBridge(b *testing.B, cfg aws.Config, table string, tr fanout.Transport, hashes bool) *fanout.Bridge {
	br, err := fanout.NewBridge(fanout.BridgeOptions{ID: "bridge-1", Table: table, DynamoDB: l2.NewClient(cfg),
		Streams: invalidation.NewStreamsClient(cfg, guardOf(b, table).Options), Transport: tr, KeyHashes: hashes})
	if err != nil {
		b.Fatal(err)
	}
	if err := br.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = br.Close() })
	return br
}

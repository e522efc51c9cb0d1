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

// scaleKeys is the number of distinct keys the writes cycle over: write i
// sets key k(i mod scaleKeys), always from pod (i mod scaleKeys), after
// every pod has read every key once (so that, in every mode, each pod holds
// or has indexed each key: with key hashes a pod can only map a hash to a
// key it holds or has held).
const scaleKeys = 20

// scaleRecorder collects eviction times per write. Messages reach each pod
// in order, so the j-th eviction of key k on a pod is that of write
// j*keys+k.
type scaleRecorder struct {
	keys, writes int
	armed        atomic.Bool
	acked        []atomic.Int64   // per write: ack time (unix ns); 0: its Set failed or not yet
	evicted      [][]int64        // per write, per pod: eviction time (unix ns); 0 none
	count        [][]atomic.Int32 // per pod, per key: evictions seen
	left         []atomic.Int32   // per write: pods still to evict (writer excluded)
	own          atomic.Int64     // evictions of a key on its own writer
	done         chan int         // write indexes whose evictions are all in
}

func (r *scaleRecorder) evict(pod int, key string) {
	if !r.armed.Load() {
		return
	}
	k, err := keyIndexOf(key)
	if err != nil || k >= r.keys {
		return
	}
	if pod == k {
		r.own.Add(1)
		return
	}
	j := int(r.count[pod][k].Add(1)) - 1
	i := j*r.keys + k
	if i >= r.writes {
		return
	}
	atomic.StoreInt64(&r.evicted[i][pod], time.Now().UnixNano())
	if r.left[i].Add(-1) == 0 {
		r.done <- i
	}
}

// keyIndexOf parses k out of the benchmark's key "k<k>.<padding>".
func keyIndexOf(key string) (int, error) {
	if len(key) < 2 || key[0] != 'k' {
		return 0, strconv.ErrSyntax
	}
	end := strings.IndexByte(key, '.')
	if end < 0 {
		end = len(key)
	}
	return strconv.Atoi(key[1:end])
}

func scaleRun(b *testing.B, n int, replace, hashes bool) {
	cfg := dynamolocal.AWSConfig(dynamolocal.ForTest(b).Endpoint())
	table := dynamolocal.TableName(b)
	ns := startNATS(b)
	writes := b.N
	keys := min(scaleKeys, n)
	rec := &scaleRecorder{keys: keys, writes: writes, acked: make([]atomic.Int64, writes), evicted: make([][]int64, writes),
		count: make([][]atomic.Int32, n), left: make([]atomic.Int32, writes), done: make(chan int, writes)}
	for i := range writes {
		rec.evicted[i] = make([]int64, n)
		rec.left[i].Store(int32(n - 1))
	}
	for p := range n {
		rec.count[p] = make([]atomic.Int32, keys)
	}
	// Keys of about 40 bytes, like "k7.user-profile-…" ids: the size the
	// README's cost arithmetic assumes.
	key := func(k int) string { return "k" + strconv.Itoa(k) + ".3f2c9a6e-user-profile-0b7d41e29c55" }
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
	// A probe subscriber (one more connection) records when each write's
	// message reached this process: ack->probe is the bridge's and the
	// broker's part of ack->evict.
	probe := make([]atomic.Int64, writes)
	probeCount := make([]int, keys)
	byHash := make(map[uint64]int, keys)
	for k := range keys {
		byHash[l2.KeyHash("", key(k))] = k
	}
	probeKey := func(k int, at int64) {
		if !rec.armed.Load() {
			return
		}
		if i := probeCount[k]*keys + k; i < writes {
			probe[i].Store(at)
		}
		probeCount[k]++
	}
	unsub, err := dial(b, ns).Subscribe(fanout.DefaultSubject(table), func(data []byte) {
		at := time.Now().UnixNano()
		m, err := fanout.DecodeMessage(data)
		if err != nil {
			return
		}
		for _, h := range m.Hashes {
			if k, ok := byHash[h]; ok {
				probeKey(k, at)
			}
		}
		for _, pk := range m.Keys {
			if k, err := keyIndexOf(pk[strings.LastIndexByte(pk, '#')+1:]); err == nil && k < keys {
				probeKey(k, at)
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
	ctx := testContext(b)

	// Warm-up: each key written once, its message applied everywhere, then
	// read by every pod (L2 hits: no stream record).
	applied := func() int64 {
		var a int64
		for _, s := range srcs {
			a = min(a, s.PodStats().Keys)
			if a == 0 {
				a = s.PodStats().Keys
			}
		}
		return a
	}
	before := applied()
	for k := range keys {
		if err := pods[k].Set(ctx, key(k), "v"); err != nil {
			b.Fatalf("warm-up Set: %v", err)
		}
	}
	waitFor(b, "the warm-up writes applied by every pod", func() bool { return applied() >= before+int64(keys) })
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := w; p < n; p += 8 {
				for k := range keys {
					if _, err := pods[p].Get(ctx, key(k)); err != nil {
						b.Errorf("warm-up Get: %v", err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	var flushes0 int64
	for _, s := range srcs {
		flushes0 += s.PodStats().Flushes
	}
	v0, _ := ns.ns.Varz(nil)
	pub0 := br.Stats()
	rec.armed.Store(true)

	b.ResetTimer()
	tick := time.NewTicker(scaleWriteEvery)
	var (
		setErrs atomic.Int64
		setErr  atomic.Value
	)
	for i := range writes {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := i % keys
			if err := pods[k].Set(ctx, key(k), "v"+strconv.Itoa(i)); err != nil {
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
			if p == i%keys {
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

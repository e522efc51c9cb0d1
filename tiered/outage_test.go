package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	"github.com/sony/gobreaker/v2"

	"github.com/tieredcache/tieredcache/internal/ddbfault"
	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

// Outage tests: invariant 5 of the design (DynamoDB being slow, throttled or
// down never fails a GetOrLoad whose loader works), writes reported when they
// cannot reach DynamoDB, and automatic recovery.

func drain(ch chan string) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// keyLoader returns "v:"+key and counts its calls.
func keyLoader(calls *atomic.Int64) tiered.Loader[string] {
	return func(_ context.Context, key string) (string, error) {
		calls.Add(1)
		return "v:" + key, nil
	}
}

// outageLoad is the load TestOutageKillDynamoDBLocal keeps running.
type outageLoad struct {
	phase atomic.Int32 // phaseUp, phaseDown (between Stop and Resume), phaseBack

	gets, getFails, getsDown, loads atomic.Int64
	maxGetNanos                     atomic.Int64
	sets, setFails, setsDownFailed  atomic.Int64

	mu       sync.Mutex
	problems []string          // first few wrong outcomes, for the failure message
	acked    map[string]string // Sets that returned nil: key -> value
}

const (
	phaseUp int32 = iota
	phaseDown
	phaseBack
)

func (l *outageLoad) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.problems) < 10 {
		l.problems = append(l.problems, fmt.Sprintf(format, args...))
	}
}

// reader runs GetOrLoad in a loop: half on a key set shared by every node and
// goroutine (collapsing, L1 hits), half on keys never seen (always a miss, so
// DynamoDB is asked on every other call).
func (l *outageLoad) reader(ctx context.Context, n *node, id string, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(len(id)), uint64(time.Now().UnixNano())))
	loader := keyLoader(&l.loads)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		key := fmt.Sprintf("hot-%d", rng.IntN(300))
		if i%2 == 1 {
			key = fmt.Sprintf("fresh-%s-%d", id, i)
		}
		before := l.phase.Load()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		start := time.Now()
		v, err := n.GetOrLoad(cctx, key, loader)
		took := time.Since(start)
		cancel()
		l.gets.Add(1)
		if before == phaseDown && l.phase.Load() == phaseDown {
			l.getsDown.Add(1)
		}
		for {
			m := l.maxGetNanos.Load()
			if int64(took) <= m || l.maxGetNanos.CompareAndSwap(m, int64(took)) {
				break
			}
		}
		if err != nil || v != "v:"+key {
			l.getFails.Add(1)
			l.problem("GetOrLoad (phase %d->%d, %v) = %q, %v", before, l.phase.Load(), took, v, err)
		}
		time.Sleep(time.Millisecond) // pacing: leave CPU to DynamoDB Local's JVM
	}
}

// writer Sets keys written once each, so that every acknowledged Set can be
// checked in the table after the outage.
func (l *outageLoad) writer(ctx context.Context, n *node, id string, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		key, val := fmt.Sprintf("w-%s-%d", id, i), fmt.Sprintf("x-%d", i)
		before := l.phase.Load()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := n.Set(cctx, key, val)
		cancel()
		wholeOutage := before == phaseDown && l.phase.Load() == phaseDown
		l.sets.Add(1)
		var l2err *tiered.L2Error
		switch {
		case err == nil && wholeOutage:
			l.problem("Set returned nil while DynamoDB Local was down")
		case err == nil:
			l.mu.Lock()
			l.acked[key] = val
			l.mu.Unlock()
		case !errors.Is(err, tiered.ErrL2Unavailable) || !errors.As(err, &l2err):
			l.setFails.Add(1)
			l.problem("Set failed with an error that is not ErrL2Unavailable/*L2Error: %v", err)
		default:
			l.setFails.Add(1)
			if wholeOutage {
				l.setsDownFailed.Add(1)
			}
		}
		time.Sleep(20 * time.Millisecond) // pacing
	}
}

func TestOutageKillDynamoDBLocal(t *testing.T) {
	const (
		outage       = 4 * time.Second // deliberate wall-clock outage
		readersPer   = 3
		recoverLimit = 60 * time.Second
	)
	dynamolocal.SkipShort(t)
	ctx := testContext(t)
	srv, err := dynamolocal.StartWithOptions(ctx, dynamolocal.StartOptions{DBPath: t.TempDir()})
	if err != nil {
		if dynamolocal.InCI() {
			t.Fatalf("DynamoDB Local is required under CI=true: %v", err)
		}
		t.Skipf("DynamoDB Local unavailable: %v", err)
	}
	t.Cleanup(func() { _ = srv.Stop() }) // runs after the nodes' Close (cleanups run last-in first-out)
	cfg := dynamolocal.AWSConfig(srv.Endpoint())
	table := dynamolocal.TableName(t)
	tweak := func(o *tiered.Options[string]) {
		o.L1TTL = time.Second // keep misses (and so DynamoDB calls) coming on the shared keys
	}
	nodes := []*node{newNodeAt(t, cfg, table, tweak), newNodeAt(t, cfg, table, tweak)}

	load := &outageLoad{acked: map[string]string{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for ni, n := range nodes {
		for g := range readersPer {
			wg.Add(1)
			go func() { defer wg.Done(); load.reader(ctx, n, fmt.Sprintf("n%dr%d", ni, g), stop) }()
		}
		wg.Add(1)
		go func() { defer wg.Done(); load.writer(ctx, n, fmt.Sprintf("n%d", ni), stop) }()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	// A loaded machine may be slow to get there: the bound only catches a hang.
	if !awaitCond(90*time.Second, func() bool { return load.gets.Load() >= 100 && load.sets.Load() >= 5 }) {
		t.Fatalf("load did not get going: %d GetOrLoads, %d Sets", load.gets.Load(), load.sets.Load())
	}
	if f := load.getFails.Load(); f != 0 {
		t.Fatalf("%d GetOrLoad failures before the outage: %v", f, load.problems)
	}
	opensBefore := []uint64{nodes[0].Stats().Breaker.Opens, nodes[1].Stats().Breaker.Opens}

	// Kill DynamoDB Local (SIGKILL) and keep it down.
	if err := srv.Stop(); err != nil {
		t.Fatalf("stop DynamoDB Local: %v", err)
	}
	load.phase.Store(phaseDown)
	downAt := time.Now()
	getsAtDown := load.gets.Load()
	time.Sleep(outage)
	// The outage lasts until it has been felt, however slowly a loaded
	// machine runs the load: every breaker opened, a GetOrLoad and a failed
	// Set both wholly inside it.
	felt := func() bool {
		for i, n := range nodes {
			if n.Stats().Breaker.Opens <= opensBefore[i] {
				return false
			}
		}
		return load.getsDown.Load() > 0 && load.setsDownFailed.Load() > 0
	}
	if !awaitCond(recoverLimit, felt) {
		t.Errorf("the outage was not felt within %v more: %d GetOrLoads and %d failed Sets wholly inside it",
			recoverLimit, load.getsDown.Load(), load.setsDownFailed.Load())
	}
	for i, n := range nodes {
		st := n.Stats()
		if st.Breaker.Opens <= opensBefore[i] {
			t.Errorf("node %d: breaker did not open during the outage: %+v", i, st)
		}
		t.Logf("node %d during outage: breaker %s, opens %d, L2 errors %d, loads %d, degraded %v",
			i, st.Breaker.State, st.Breaker.Opens, st.L2.Errors, st.Loads.Calls, st.Stream.Degraded)
	}
	load.phase.Store(phaseBack)
	resumeStart := time.Now()
	if err := srv.Resume(ctx); err != nil {
		t.Fatalf("resume DynamoDB Local: %v", err)
	}
	resumedAt := time.Now()
	t.Logf("DynamoDB Local down for %v (%v deliberate + %v to start again); %d GetOrLoads wholly inside the kill window, %d in total meanwhile",
		resumedAt.Sub(downAt).Round(time.Millisecond), outage, resumedAt.Sub(resumeStart).Round(time.Millisecond),
		load.getsDown.Load(), load.gets.Load()-getsAtDown)

	// The breakers close again on their own, under the running load.
	for i, n := range nodes {
		if !awaitCond(recoverLimit, func() bool { return n.Stats().Breaker.State == "closed" }) {
			t.Fatalf("node %d: breaker not closed %v after DynamoDB Local came back: %+v", i, recoverLimit, n.Stats())
		}
	}
	t.Logf("breakers closed %v after DynamoDB Local answered again", time.Since(resumedAt).Round(time.Millisecond))
	// The load goes on: 100 more GetOrLoads complete. Only a stall fails
	// (no GetOrLoad completing for recoverLimit), not a slow machine.
	getsAtClose := load.gets.Load()
	for seen := getsAtClose; seen < getsAtClose+100; seen = load.gets.Load() {
		if !awaitCond(recoverLimit, func() bool { return load.gets.Load() > seen }) {
			t.Fatalf("load stalled after recovery: no GetOrLoad completed in %v (%d since the breakers closed)",
				recoverLimit, seen-getsAtClose)
		}
	}
	stopLoad()

	gets, fails := load.gets.Load(), load.getFails.Load()
	t.Logf("GetOrLoad: %d calls, %d failures, slowest %v; loader calls %d; Set: %d calls, %d reported ErrL2Unavailable (%d wholly inside the kill window), %d acknowledged",
		gets, fails, time.Duration(load.maxGetNanos.Load()).Round(time.Millisecond), load.loads.Load(),
		load.sets.Load(), load.setFails.Load(), load.setsDownFailed.Load(), len(load.acked))
	if fails != 0 || len(load.problems) != 0 {
		t.Fatalf("%d of %d GetOrLoads failed with a working loader; problems: %q", fails, gets, load.problems)
	}
	if load.getsDown.Load() == 0 {
		t.Fatalf("no GetOrLoad ran wholly inside the outage: the test proved nothing")
	}
	if load.setsDownFailed.Load() == 0 {
		t.Fatalf("no Set ran wholly inside the outage: the test proved nothing")
	}

	// Every acknowledged Set is in the table: none was lost silently.
	tbl, err := l2.New(l2.Options{Client: l2.NewClient(cfg), Table: table, CallTimeout: testCallTimeout})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range load.acked {
		item, err := tbl.Get(ctx, key)
		if err != nil || string(item.Value) != want {
			t.Fatalf("an acknowledged Set is not in the table after the outage: Get = %q, %v", item.Value, err)
		}
	}

	// The stream consumers recover too: healthy, trusted, and delivering the
	// changes made after the outage.
	for i, n := range nodes {
		if !awaitCond(recoverLimit, func() bool {
			st := n.Stats()
			return st.Stream.Enabled && !st.Stream.Degraded
		}) {
			t.Fatalf("node %d: stream consumer not healthy %v after the outage: %+v", i, recoverLimit, n.Stats().Stream)
		}
		st := n.Stats()
		t.Logf("node %d after recovery: degraded episodes %d, flushes %d, stream changes %d, events buffered %d, stream errors %d, iterators renewed %d, quirks %d, last error %q",
			i, st.Stream.DegradedEpisodes, st.Stream.Flushes, st.Stream.Changes, len(n.events), st.Stream.Errors, st.Stream.IteratorsRenewed, st.Stream.Quirks, st.Stream.LastError)
	}
	// A write made after the outage on one node reaches the other through
	// its stream. Each key is written once, by one node only, so its event
	// can only come from that write. (The load's events may have filled the
	// nodes' event buffers, which then drop events: empty them first.)
	for _, n := range nodes {
		drain(n.events)
	}
	for i, pair := range [][2]*node{{nodes[0], nodes[1]}, {nodes[1], nodes[0]}} {
		writer, other := pair[0], pair[1]
		key := fmt.Sprintf("after-%d", i)
		setAt := time.Now()
		var err error
		if !awaitCond(30*time.Second, func() bool { err = writer.Set(ctx, key, "new"); return err == nil }) {
			t.Fatalf("Set after recovery keeps failing: %v", err)
		}
		other.awaitEvent(t, key)
		t.Logf("a write on node %d reached node %d's stream consumer %v later", i, 1-i, time.Since(setAt).Round(time.Millisecond))
		if v, err := other.Get(ctx, key); err != nil || v != "new" {
			t.Fatalf("Get on the other node after the write = %q, %v; want new", v, err)
		}
	}
}

// throttlingException is the other throttling error DynamoDB returns.
func throttlingException() error {
	return &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate of requests exceeds the allowed throughput (ddbfault)"}
}

func TestThrottlingNeverFailsReads(t *testing.T) {
	const (
		keys       = 16
		perKey     = 8
		maxOutage  = 2
		cooldown   = time.Second
		callBound  = 20 * time.Second
		recoverFor = 30 * time.Second
	)
	cfg := awsConfig(t)
	table := dynamolocal.TableName(t)
	inj := ddbfault.New()
	n := newNodeAt(t, cfg, table, func(o *tiered.Options[string]) {
		o.DynamoDB = l2.NewClient(cfg, inj.Options)
		o.MaxOutageLoads = maxOutage
		o.BreakerCooldown = cooldown
	})
	ctx := testContext(t)
	// Every data-path call is throttled, every attempt.
	inj.Add(ddbfault.Rule{Op: "GetItem", Throttle: true})
	inj.Add(ddbfault.Rule{Op: "BatchGetItem", Throttle: true})
	inj.Add(ddbfault.Rule{Op: "UpdateItem", Err: throttlingException()})

	var (
		mu       sync.Mutex
		calls    = map[string]int{}
		cur, top atomic.Int64
		arrived  sync.WaitGroup
		gate     = make(chan struct{})
	)
	arrived.Add(keys * perKey)
	go func() { arrived.Wait(); close(gate) }()
	loader := func(ctx context.Context, key string) (string, error) {
		mu.Lock()
		calls[key]++
		mu.Unlock()
		c := cur.Add(1)
		defer cur.Add(-1)
		for {
			m := top.Load()
			if c <= m || top.CompareAndSwap(m, c) {
				break
			}
		}
		// Hold the loader until every caller has arrived, so that the callers
		// of one key are concurrent and the loaders of different keys overlap.
		select {
		case <-gate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		time.Sleep(5 * time.Millisecond) // the source's own work
		return "v:" + key, nil
	}

	var (
		wg       sync.WaitGroup
		failures atomic.Int64
		slowest  atomic.Int64
		errMu    sync.Mutex
		firstErr error
	)
	start := time.Now()
	for k := range keys {
		for range perKey {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := fmt.Sprintf("k%d", k)
				cctx, cancel := context.WithTimeout(ctx, callBound)
				defer cancel()
				arrived.Done()
				t0 := time.Now()
				v, err := n.GetOrLoad(cctx, key, loader)
				if d := int64(time.Since(t0)); d > slowest.Load() {
					slowest.Store(d) // approximate max is enough for the log
				}
				if err != nil || v != "v:"+key {
					failures.Add(1)
					errMu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("GetOrLoad = %q, %v", v, err)
					}
					errMu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	st := n.Stats()
	t.Logf("throttled: %d GetOrLoads in %v (slowest %v), %d failures; loader calls %d, max concurrent %d (cap %d); breaker %s, opens %d; L2 calls %d, errors %d; faults injected %d",
		keys*perKey, time.Since(start).Round(time.Millisecond), time.Duration(slowest.Load()).Round(time.Millisecond),
		failures.Load(), st.Loads.Calls, top.Load(), maxOutage, st.Breaker.State, st.Breaker.Opens, st.L2.Calls, st.L2.Errors, inj.Injected())
	if failures.Load() != 0 {
		t.Fatalf("%d of %d GetOrLoads failed under throttling with a working loader; first: %v", failures.Load(), keys*perKey, firstErr)
	}
	for k := range keys {
		if got := calls[fmt.Sprintf("k%d", k)]; got != 1 {
			t.Errorf("key k%d: %d loader calls for %d concurrent callers, want 1", k, got, perKey)
		}
	}
	if m := top.Load(); m > maxOutage || m < 1 {
		t.Errorf("max concurrent loader calls while throttled = %d, want 1..%d (MaxOutageLoads)", m, maxOutage)
	}
	if st.Breaker.Opens == 0 {
		t.Errorf("breaker never opened under constant throttling: %+v", st)
	}
	if inj.Injected() == 0 {
		t.Fatalf("no fault injected")
	}
	// Writes that cannot reach DynamoDB are reported, whether the breaker
	// refuses them or DynamoDB throttles them, and leave no value in L1.
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"Set", func() error { return n.Set(ctx, "k1", "written") }},
		{"Delete", func() error { return n.Delete(ctx, "k2") }},
	} {
		openBefore := n.Stats().Breaker.State == "open"
		err := op.do()
		openAfter := n.Stats().Breaker.State == "open"
		var l2err *tiered.L2Error
		if !errors.Is(err, tiered.ErrL2Unavailable) || !errors.As(err, &l2err) || l2err.Op != op.name {
			t.Errorf("%s while throttled = %v, want an *L2Error matching ErrL2Unavailable", op.name, err)
		}
		if openBefore && openAfter && !errors.Is(err, gobreaker.ErrOpenState) {
			t.Errorf("%s with the breaker open = %v, want it to wrap gobreaker.ErrOpenState", op.name, err)
		}
	}
	if v, err := n.GetOrLoad(ctx, "k1", loader); err != nil || v != "v:k1" {
		t.Errorf("GetOrLoad after a failed Set = %q, %v; want the loader's value (the failed write must not be served)", v, err)
	}
	// Nothing reached L2 while every write was throttled.
	tbl := l2Table(t, table)
	if _, err := tbl.Get(ctx, "k0"); !errors.Is(err, l2.ErrNotFound) {
		t.Errorf("L2 Get of a key loaded while throttled = %v, want ErrNotFound", err)
	}

	// Throttling ends: the breaker closes on its own (driven by ordinary
	// traffic) and L2 is written again.
	inj.Reset()
	healed := time.Now()
	loads := &atomic.Int64{}
	i := 0
	if !awaitCond(recoverFor, func() bool {
		i++
		key := fmt.Sprintf("recover-%d", i)
		if v, err := n.GetOrLoad(ctx, key, keyLoader(loads)); err != nil || v != "v:"+key {
			t.Fatalf("GetOrLoad while recovering = %q, %v", v, err)
		}
		return n.Stats().Breaker.State == "closed"
	}) {
		t.Fatalf("breaker not closed %v after throttling stopped: %+v", recoverFor, n.Stats())
	}
	t.Logf("breaker closed %v after throttling stopped (cooldown %v)", time.Since(healed).Round(time.Millisecond), cooldown)
	if v, err := n.GetOrLoad(ctx, "after", constLoader("fresh")); err != nil || v != "fresh" {
		t.Fatalf("GetOrLoad after recovery = %q, %v", v, err)
	}
	if item, err := tbl.Get(ctx, "after"); err != nil || string(item.Value) != "fresh" {
		t.Fatalf("L2 not written after recovery: Get = %q, %v", item.Value, err)
	}
	if err := n.Set(ctx, "after-set", "s"); err != nil {
		t.Fatalf("Set after recovery: %v", err)
	}
}

// dataCalls counts the data-path operations that reached the client.
func dataCalls(inj *ddbfault.Injector) int {
	return inj.Calls("GetItem") + inj.Calls("UpdateItem") + inj.Calls("BatchGetItem")
}

func TestSlowDynamoDBBoundsLatency(t *testing.T) {
	const (
		slow     = 2 * l2.DefaultCallTimeout // every attempt outlives the per-call deadline
		callers  = 6
		perCall  = 5
		cooldown = 2 * time.Second
		// A miss makes at most two L2 calls while DynamoDB is slow (the read,
		// then the fill; the lease is skipped once the read failed), each cut
		// at DefaultCallTimeout. Generous slack for a loaded 2-core machine.
		bound = 2*l2.DefaultCallTimeout + 2*time.Second
	)
	cfg := awsConfig(t)
	table := dynamolocal.TableName(t)
	inj := ddbfault.New()
	n := newNodeAt(t, cfg, table, func(o *tiered.Options[string]) {
		o.DynamoDB = l2.NewClient(cfg, inj.Options)
		o.BreakerCooldown = cooldown
		o.CallTimeout = 0 // the production default is under test
	})
	ctx := testContext(t)
	inj.Add(ddbfault.Rule{Op: "GetItem", Latency: slow})
	inj.Add(ddbfault.Rule{Op: "UpdateItem", Latency: slow})
	inj.Add(ddbfault.Rule{Op: "BatchGetItem", Latency: slow})

	var (
		wg       sync.WaitGroup
		failures atomic.Int64
		mu       sync.Mutex
		slowest  time.Duration
		problems []string
		loads    atomic.Int64
	)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perCall {
				key := fmt.Sprintf("slow-%d-%d", c, i)
				t0 := time.Now()
				v, err := n.GetOrLoad(ctx, key, keyLoader(&loads))
				d := time.Since(t0)
				mu.Lock()
				slowest = max(slowest, d)
				if err != nil || v != "v:"+key || d > bound {
					failures.Add(1)
					if len(problems) < 5 {
						problems = append(problems, fmt.Sprintf("GetOrLoad took %v: %q, %v", d, v, err))
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	st := n.Stats()
	t.Logf("slow DynamoDB (%v a call, deadline %v): %d GetOrLoads, slowest %v (bound %v), %d failed or too slow; breaker %s, opens %d",
		slow, l2.DefaultCallTimeout, callers*perCall, slowest.Round(time.Millisecond), bound, failures.Load(), st.Breaker.State, st.Breaker.Opens)
	if failures.Load() != 0 {
		t.Fatalf("%d GetOrLoads failed or exceeded %v: %q", failures.Load(), bound, problems)
	}
	if st.Breaker.Opens == 0 {
		t.Fatalf("breaker never opened although every call timed out: %+v", st)
	}

	// While the breaker is open a miss does not wait for DynamoDB at all.
	var fast time.Duration
	if !awaitCond(20*time.Second, func() bool {
		if n.Stats().Breaker.State != "open" {
			// Half-open: let the probe fail (it takes one call deadline).
			_, _ = n.GetOrLoad(ctx, fmt.Sprintf("probe-%d", time.Now().UnixNano()), keyLoader(&loads))
			return false
		}
		before := n.Stats()
		reqs := dataCalls(inj)
		t0 := time.Now()
		v, err := n.GetOrLoad(ctx, fmt.Sprintf("open-%d", time.Now().UnixNano()), keyLoader(&loads))
		fast = time.Since(t0)
		if err != nil || v == "" {
			t.Fatalf("GetOrLoad with the breaker open = %q, %v", v, err)
		}
		st := n.Stats()
		if st.Breaker.State != "open" || st.Breaker.Opens != before.Breaker.Opens {
			return false // it went half-open meanwhile: measure again
		}
		if got := dataCalls(inj) - reqs; got != 0 {
			t.Fatalf("a miss with the breaker open sent %d DynamoDB requests", got)
		}
		if st.L2.Calls != before.L2.Calls || st.L2.Errors != before.L2.Errors {
			t.Fatalf("a miss with the breaker open counted L2Calls +%d, L2Errors +%d; it made no DynamoDB request",
				st.L2.Calls-before.L2.Calls, st.L2.Errors-before.L2.Errors)
		}
		return true
	}) {
		t.Fatalf("could not observe a miss with the breaker open: %+v", n.Stats())
	}
	if fast >= l2.DefaultCallTimeout {
		t.Fatalf("a miss with the breaker open took %v: it waited for DynamoDB (deadline %v)", fast, l2.DefaultCallTimeout)
	}
	t.Logf("a miss with the breaker open took %v", fast)

	// DynamoDB is fast again: the breaker closes on its own.
	inj.Reset()
	healed := time.Now()
	i := 0
	if !awaitCond(30*time.Second, func() bool {
		i++
		if _, err := n.GetOrLoad(ctx, fmt.Sprintf("heal-%d", i), keyLoader(&loads)); err != nil {
			t.Fatalf("GetOrLoad while recovering: %v", err)
		}
		return n.Stats().Breaker.State == "closed"
	}) {
		t.Fatalf("breaker not closed after DynamoDB became fast again: %+v", n.Stats())
	}
	t.Logf("breaker closed %v after the latency was removed", time.Since(healed).Round(time.Millisecond))
	if err := n.Set(ctx, "after", "x"); err != nil {
		t.Fatalf("Set after recovery: %v", err)
	}
}

// TestLeaseFailureCapsLoads: when DynamoDB answers reads but refuses the
// lease write (throttled UpdateItem), the breaker may still be closed; the
// loads that follow run without a lease, so the MaxOutageLoads cap applies.
func TestLeaseFailureCapsLoads(t *testing.T) {
	const keys = 8
	cfg := awsConfig(t)
	inj := ddbfault.New()
	n := newNodeAt(t, cfg, dynamolocal.TableName(t), func(o *tiered.Options[string]) {
		o.DynamoDB = l2.NewClient(cfg, inj.Options)
		o.MaxOutageLoads = 1
		o.BreakerFailures = 1 << 20 // keep the breaker closed: the lease failure alone must cap
	})
	ctx := testContext(t)
	inj.Add(ddbfault.Rule{Op: "UpdateItem", Err: throttlingException()})

	var cur, top, loads atomic.Int64
	loader := func(_ context.Context, key string) (string, error) {
		loads.Add(1)
		c := cur.Add(1)
		defer cur.Add(-1)
		for m := top.Load(); c > m && !top.CompareAndSwap(m, c); m = top.Load() {
		}
		time.Sleep(20 * time.Millisecond) // the source's own work: lets loads overlap if uncapped
		return "v:" + key, nil
	}
	var wg sync.WaitGroup
	for i := 0; i < keys; i++ {
		wg.Add(1)
		go func(key string) {
			defer wg.Done()
			if v, err := n.GetOrLoad(ctx, key, loader); err != nil || v != "v:"+key {
				t.Errorf("GetOrLoad(%s) = %q, %v", key, v, err)
			}
		}(fmt.Sprint("k", i))
	}
	wg.Wait()
	if loads.Load() != keys {
		t.Fatalf("%d loads for %d keys", loads.Load(), keys)
	}
	if st := n.Stats(); st.Breaker.State != "closed" {
		t.Fatalf("breaker %s; the test needs it closed", st.Breaker.State)
	}
	if got := top.Load(); got > 1 {
		t.Fatalf("%d loader calls ran at once without leases; MaxOutageLoads is 1", got)
	}
}

// TestCallerDeadlinesDoNotOpenTheBreaker: Set runs on the caller's context;
// callers with deadlines tighter than DynamoDB's latency fail, but that is
// their deadline, not DynamoDB failing, and must not cut L2 off for
// everyone. Calls that run out of l2's own CallTimeout do count.
func TestCallerDeadlinesDoNotOpenTheBreaker(t *testing.T) {
	cfg := awsConfig(t)
	inj := ddbfault.New()
	n := newNodeAt(t, cfg, dynamolocal.TableName(t), func(o *tiered.Options[string]) {
		o.DynamoDB = l2.NewClient(cfg, inj.Options)
		o.BreakerFailures = 3
		o.CallTimeout = 0 // the production default is under test
	})
	ctx := testContext(t)
	inj.Add(ddbfault.Rule{Op: "UpdateItem", Latency: 200 * time.Millisecond}) // slower than the callers allow, within CallTimeout
	for i := 0; i < 10; i++ {
		short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		err := n.Set(short, "k", "v")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, tiered.ErrL2Unavailable) {
			t.Fatalf("Set past the caller's deadline = %v", err)
		}
	}
	if st := n.Stats(); st.Breaker.Opens != 0 || st.Breaker.State != "closed" {
		t.Fatalf("breaker %s after %d opens: callers' deadlines were blamed on DynamoDB", st.Breaker.State, st.Breaker.Opens)
	}
	inj.Reset()
	inj.Add(ddbfault.Rule{Op: "UpdateItem", Latency: 2 * l2.DefaultCallTimeout}) // now DynamoDB itself is too slow
	for i := 0; i < 3; i++ {
		if err := n.Set(ctx, "k", "v"); !errors.Is(err, l2.ErrTimeout) {
			t.Fatalf("Set against a hung DynamoDB = %v, want l2.ErrTimeout", err)
		}
	}
	if st := n.Stats(); st.Breaker.Opens != 1 {
		t.Fatalf("BreakerOpens = %d after 3 timeouts, want 1", st.Breaker.Opens)
	}
}

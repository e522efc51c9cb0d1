package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/tieredcache/tieredcache/internal/history"
	"github.com/tieredcache/tieredcache/tiered"
)

const (
	// opTimeout bounds one request of the workload: above the cache's own
	// LoadTimeout (10 s), so a read that fails is the cache's failure (an
	// ErrLoadTimeout among them), never the workload giving up first.
	opTimeout      = 15 * time.Second
	checkDelay     = 3 * time.Second  // how long a read waits before it is judged
	finishTimeout  = 20 * time.Second // how long a drained node waits for the parent's finish
	setupTimeout   = 60 * time.Second // building the cache (table check, stream consumer start)
	startupTimeout = 2 * time.Minute  // waiting for the parent's start
)

// node is one node process: its own L1, its own stream consumer, the shared
// table, and a workload driving them.
type node struct {
	cfg   config
	cache *tiered.Cache[string]
	src   *source
	check *onlineChecker
	lag   *ackLag
	out   *lineWriter
	begin time.Time
	fz    *freezeLog // -freeze, on the reader only

	status func() []Field // WithNodeStatus

	stopping atomic.Bool
	seq      atomic.Uint64

	reads, notFound, readErrors, sets, deletes, writeErrors atomic.Uint64
	firstReadErr                                            atomic.Pointer[string] // for the summary: what failed
	l2Unavailable                                           atomic.Uint64
}

// runNode is main for a node process. Its stdout carries JSON lines to the
// parent, its stdin JSON lines from it.
func runNode(cfg config, ro runOptions, stdin io.Reader, stdout, stderr io.Writer) int {
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", cfg.Node)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx) // honours AWS_ENDPOINT_URL, set by the parent
	if err != nil {
		fmt.Fprintf(stderr, "node %s: AWS config: %v\n", cfg.Node, err)
		return 1
	}
	t := cfg.Staleness
	if t == 0 {
		t = tiered.DefaultStalenessBound
	}
	n := &node{
		cfg:    cfg,
		status: ro.status,
		check:  newOnlineChecker(t, checkDelay),
		lag:    newAckLag(),
		out:    &lineWriter{w: stdout},
		src: &source{
			ddb:     dynamodb.NewFromConfig(sourceConfig(awsCfg, cfg.SourceEndpoint)),
			table:   cfg.SourceTable,
			latency: cfg.LoaderLatency,
		},
	}
	onInvalidate := n.lag.evicted
	if cfg.Role == roleReader {
		n.fz = &freezeLog{}
		onInvalidate = func(key string, created time.Time) {
			n.fz.evicted()
			n.lag.evicted(key, created)
		}
	}
	opts := tiered.Options[string]{
		Table:           cfg.Table,
		AWS:             &awsCfg,
		L1MaxBytes:      cfg.L1Bytes,
		StalenessBound:  cfg.Staleness,
		ReplaceOnChange: cfg.Replace,
		RefreshAhead:    cfg.RefreshAhead,
		L1TTL:           cfg.L1TTL,
		CallTimeout:     cfg.CallTimeout,
		L1MaxTTL:        max(cfg.L1TTL, tiered.DefaultL1MaxTTL),
		Logger:          logger,
		OnInvalidate:    onInvalidate,
	}
	if ro.cacheOpts != nil {
		if err := ro.cacheOpts(cfg.Node, &opts); err != nil {
			fmt.Fprintf(stderr, "node %s: cache options hook: %v\n", cfg.Node, err)
			return 1
		}
	}
	n.cache, err = tiered.New(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "node %s: %v\n", cfg.Node, err)
		return 1
	}
	defer n.cache.Close()

	// The node hook (metrics): stopped once, before the cache is closed.
	var metricsURL string
	stopHook := func() {}
	if ro.nodeHook != nil {
		url, stop, err := ro.nodeHook(n.cache, cfg.Node)
		if err != nil {
			fmt.Fprintf(stderr, "node %s: node hook: %v\n", cfg.Node, err)
			return 1
		}
		metricsURL = url
		if stop != nil {
			stopHook = sync.OnceFunc(stop)
		}
	}
	defer stopHook()

	start, finish, eof := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go n.readParent(stdin, start, finish, eof)
	n.out.send(message{T: msgReady, Metrics: metricsURL})

	select {
	case <-start:
	case <-eof:
		return 0 // the parent is gone before we began
	case <-sigs:
		return 0
	case <-time.After(startupTimeout):
		fmt.Fprintf(stderr, "node %s: no start from the parent\n", cfg.Node)
		return 1
	}

	n.begin = time.Now()
	var workers sync.WaitGroup
	for i := 0; i < cfg.Workers; i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			n.work(int64(i))
		}()
	}
	reportDone := make(chan struct{})
	var reporter sync.WaitGroup
	reporter.Add(1)
	go func() {
		defer reporter.Done()
		tick := time.NewTicker(cfg.Interval)
		defer tick.Stop()
		for {
			select {
			case <-reportDone:
				return
			case now := <-tick.C:
				n.check.checkDue(now)
				n.out.send(message{T: msgStats, Stats: n.stats(false)})
			}
		}
	}()

	// Run until the parent signals (its normal way to end the run), the
	// parent disappears, or the backstop duration passes.
	select {
	case <-sigs:
	case <-eof:
	case <-time.After(cfg.Duration):
	}
	n.stopping.Store(true)
	workers.Wait()
	close(reportDone)
	reporter.Wait()
	n.out.send(message{T: msgStats, Stats: n.stats(false)})
	n.out.send(message{T: msgDrained})

	// Every ack of ours is out. Wait until the parent has relayed every
	// other node's too, then judge the reads still pending.
	select {
	case <-finish:
	case <-eof:
	case <-sigs: // a second signal: do not wait
	case <-time.After(finishTimeout):
		fmt.Fprintf(stderr, "node %s: no finish from the parent; judging with what is known\n", cfg.Node)
	}
	n.check.finish()
	final := n.stats(true)
	if n.fz != nil {
		final.Freezes = n.fz.reports(n.check.h.T, n.check.h.Violations())
	}
	if metricsURL != "" {
		// One scrape of our own /metrics, through the hook's HTTP server, with
		// every counter final and the cache still open.
		final.MetricsURL = metricsURL
		final.MetricsScrape, err = scrapeMetrics(metricsURL)
		if err != nil {
			fmt.Fprintf(stderr, "node %s: scrape own metrics: %v\n", cfg.Node, err)
			return 1
		}
	}
	stopHook()
	if err := n.cache.Close(); err != nil {
		fmt.Fprintf(stderr, "node %s: close: %v\n", cfg.Node, err)
		return 1
	}
	n.out.send(message{T: msgFinal, Stats: final})
	return 0
}

// readParent handles the parent's lines: start, other nodes' acks, finish.
func (n *node) readParent(r io.Reader, start, finish, eof chan struct{}) {
	defer close(eof)
	var startOnce, finishOnce sync.Once
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			continue
		}
		switch m.T {
		case msgStart:
			startOnce.Do(func() { close(start) })
		case msgAck:
			if m.Ack != nil {
				n.noteAck(*m.Ack)
			}
		case msgFinish:
			finishOnce.Do(func() { close(finish) })
		case msgResumed:
			if m.F != nil && n.fz != nil {
				n.fz.frozen(*m.F)
			}
		}
	}
}

func (n *node) noteAck(a ackMsg) {
	n.check.addAck(a)
	if n.fz != nil && !a.Uncertain {
		n.fz.acked(a.End)
	}
	if !a.Uncertain {
		n.lag.ack(a.Key, a.Start, a.End)
	}
}

// work is one worker: Zipf-distributed keys, reads through GetOrLoad, and
// writePct% writes (source first, then the cache, as an application would).
func (n *node) work(id int64) {
	rng := rand.New(rand.NewSource(time.Now().UnixNano() + id*7919))
	zipf := rand.NewZipf(rng, n.cfg.ZipfS, 1, uint64(n.cfg.Keys-1))
	var every time.Duration
	if n.cfg.Rate > 0 {
		// Each worker takes an equal share of the node's rate.
		every = time.Duration(float64(time.Second) * float64(n.cfg.Workers) / float64(n.cfg.Rate))
	}
	next := time.Now().Add(time.Duration(rng.Int63n(int64(every) + 1))) // spread the workers
	for !n.stopping.Load() {
		if every > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			} else if d < -time.Second {
				next = time.Now() // far behind (a slow phase): do not burst to catch up
			}
			next = next.Add(n.rampedInterval(every))
		}
		key := keyName(zipf.Uint64())
		if rng.Float64()*100 < n.cfg.WritePct {
			n.write(key, rng.Float64()*100 < n.cfg.DeletePct)
		} else {
			n.read(key)
		}
	}
}

// rampedInterval is every, stretched while -ramp-up lasts: the rate climbs
// from a tenth of -rate to all of it.
func (n *node) rampedInterval(every time.Duration) time.Duration {
	if n.cfg.RampUp <= 0 {
		return every
	}
	frac := float64(time.Since(n.begin)) / float64(n.cfg.RampUp)
	if frac >= 1 {
		return every
	}
	return time.Duration(float64(every) / max(frac, 0.1))
}

func (n *node) read(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	start := time.Now()
	v, err := n.cache.GetOrLoad(ctx, key, n.src.load)
	end := time.Now()
	n.reads.Add(1)
	found := err == nil
	switch {
	case err == nil:
	case errors.Is(err, tiered.ErrNotFound):
		n.notFound.Add(1)
	default:
		if n.readErrors.Add(1) == 1 {
			msg := err.Error()
			n.firstReadErr.Store(&msg)
		}
		return
	}
	n.check.addRead(history.Read{Node: n.cfg.Node, Key: key, Value: v, Found: found, Start: start, End: end})
	if n.fz != nil {
		n.fz.read(start)
	}
}

func (n *node) write(key string, del bool) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	value := ""
	if del {
		n.deletes.Add(1)
	} else {
		n.sets.Add(1)
		value = fmt.Sprintf("%s/%d", n.cfg.Node, n.seq.Add(1))
	}
	start := time.Now()
	err := n.src.write(ctx, key, value, del)
	if err == nil {
		if del {
			err = n.cache.Delete(ctx, key)
		} else {
			err = n.cache.Set(ctx, key, value)
		}
	}
	end := time.Now()
	if err != nil {
		n.writeErrors.Add(1)
		if errors.Is(err, tiered.ErrL2Unavailable) {
			n.l2Unavailable.Add(1)
		}
	}
	a := ackMsg{Node: n.cfg.Node, Key: key, Value: value, Start: start.UnixNano(), End: end.UnixNano(), Uncertain: err != nil}
	n.noteAck(a)
	n.out.send(message{T: msgAck, Ack: &a})
}

// stats is this node's snapshot; final adds the violation samples.
func (n *node) stats(final bool) *nodeStats {
	st := n.cache.Stats()
	s := &nodeStats{
		Node:          n.cfg.Node,
		Elapsed:       time.Since(n.begin).Seconds(),
		Reads:         n.reads.Load(),
		NotFound:      n.notFound.Load(),
		ReadErrors:    n.readErrors.Load(),
		FirstReadErr:  loadString(&n.firstReadErr),
		Sets:          n.sets.Load(),
		Deletes:       n.deletes.Load(),
		WriteErrors:   n.writeErrors.Load(),
		L2Unavailable: n.l2Unavailable.Load(),
		SourceReads:   n.src.reads.Load(),
	}
	fillCacheStats(s, st)
	var lagN int
	var p50, p99, mx time.Duration
	lagN, p50, p99, mx = n.lag.summary()
	s.AckLagN, s.AckLagP50, s.AckLagP99, s.AckLagMax = lagN, ms(p50), ms(p99), ms(mx)
	var samples []string
	s.Checked, s.Violations, s.Unverified, samples = n.check.counts()
	if n.status != nil {
		s.Fields = n.status()
	}
	if final {
		s.Samples = samples
	}
	return s
}

// lineWriter writes whole JSON lines, one at a time.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) send(m message) {
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	b = append(b, '\n')
	l.mu.Lock()
	_, _ = l.w.Write(b)
	l.mu.Unlock()
}

// sourceConfig points the source-of-truth client at its own endpoint when
// the parent runs one (-outage: the cache's DynamoDB goes down, the source
// does not).
func sourceConfig(cfg aws.Config, endpoint string) aws.Config {
	if endpoint != "" {
		cfg = cfg.Copy()
		cfg.BaseEndpoint = aws.String(endpoint)
	}
	return cfg
}

func loadString(p *atomic.Pointer[string]) string {
	if s := p.Load(); s != nil {
		return *s
	}
	return ""
}

// scrapeTimeout bounds the node's scrape of its own metrics.
const scrapeTimeout = 30 * time.Second

// scrapeMetrics GETs url (Prometheus text) and returns its tieredcache_*
// sample lines, histogram buckets left out.
func scrapeMetrics(url string) ([]string, error) {
	client := &http.Client{Timeout: scrapeTimeout}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "tieredcache_") && !strings.Contains(line, "_bucket{") {
			lines = append(lines, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("GET %s: no tieredcache_ series", url)
	}
	return lines, nil
}

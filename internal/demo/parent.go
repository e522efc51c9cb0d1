package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/tiered"
)

const (
	readyTimeout   = 2 * time.Minute  // nodes building their caches
	drainTimeout   = 20 * time.Second // nodes finishing requests in flight after SIGTERM
	exitTimeout    = 30 * time.Second // nodes judging their last reads and closing
	killGrace      = 5 * time.Second  // after SIGKILL
	nodeStderrKeep = 16 << 10         // bytes of a node's stderr kept to explain a failure
)

// child is the parent's handle on one node process.
type child struct {
	name   string
	cmd    *exec.Cmd
	in     *inbox
	stderr *tailBuffer
	log    *os.File // -log-dir

	metricsURL string // from its ready message ("" without metrics)

	ready, drained, final, exited bool
	exitErr                       error
	last, prev                    *nodeStats
	rps                           float64
}

// event is something a node did: a line on its stdout, or its exit.
type event struct {
	node int
	msg  message
	raw  []byte
	exit bool
	err  error
}

// runParent is main for the parent process.
func runParent(cfg config, ro runOptions, stdout, stderr io.Writer) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	setup, cancelSetup := context.WithCancel(context.Background())
	defer cancelSetup()
	go func() { // a signal during setup cancels it (later ones are handled by the run loop)
		select {
		case <-sigs:
			cancelSetup()
		case <-setup.Done():
		}
	}()

	endpoint := cfg.Endpoint
	var cacheServer *dynamolocal.Server
	if endpoint == "" {
		fmt.Fprintln(stderr, "demo: starting DynamoDB Local (installed on first use) ...")
		var opts dynamolocal.StartOptions
		if cfg.Outage > 0 {
			// The cache's tables must survive the outage: keep them on disk.
			dir, err := os.MkdirTemp("", "tieredcache-demo-")
			if err != nil {
				fmt.Fprintf(stderr, "demo: %v\n", err)
				return 1
			}
			defer os.RemoveAll(dir)
			opts.DBPath = dir
		}
		srv, err := dynamolocal.StartWithOptions(setup, opts)
		if err != nil {
			fmt.Fprintf(stderr, "demo: DynamoDB Local: %v\n", err)
			return 1
		}
		defer func() {
			if err := srv.Stop(); err != nil {
				fmt.Fprintf(stderr, "demo: stop DynamoDB Local: %v\n", err)
			}
		}()
		endpoint, cacheServer = srv.Endpoint(), srv
		if cfg.Outage > 0 {
			// The source of truth is another database: it stays up.
			src, err := dynamolocal.Start(setup)
			if err != nil {
				fmt.Fprintf(stderr, "demo: DynamoDB Local for the source: %v\n", err)
				return 1
			}
			defer func() { _ = src.Stop() }()
			cfg.SourceEndpoint = src.Endpoint()
		}
	}
	cfg.Table = fmt.Sprintf("tieredcache-demo-%d-%d", time.Now().Unix(), os.Getpid())
	cfg.SourceTable = cfg.Table + "-source"
	if err := createTables(setup, cfg, endpoint); err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	var ext ParentExt
	if ro.parent != nil {
		var names []string
		for i := 0; i < cfg.Nodes; i++ {
			names = append(names, nodeName(i))
		}
		e, err := ro.parent(setup, ParentSetup{Endpoint: endpoint, Table: cfg.Table, Nodes: names, Staleness: cfg.staleness()})
		if err != nil {
			fmt.Fprintf(stderr, "demo: %v\n", err)
			return 1
		}
		if e != nil {
			ext = *e
		}
		if ext.Close != nil {
			defer ext.Close()
		}
	}
	if setup.Err() != nil {
		return 130
	}
	cancelSetup() // from here on the run loop owns the signals

	r := &runner{cfg: cfg, endpoint: endpoint, stdout: stdout, stderr: stderr, sigs: sigs, ext: ext,
		events: make(chan event, 4096), view: newView(cfg, endpoint, stdout), server: cacheServer}
	r.view.status = ext.Status
	return r.loop()
}

// createTables creates the cache table through tiered (CreateTable) and the
// source-of-truth table.
func createTables(ctx context.Context, cfg config, endpoint string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	awsCfg := dynamolocal.AWSConfig(endpoint)
	c, err := tiered.New(ctx, tiered.Options[string]{
		Table:               cfg.Table,
		AWS:                 &awsCfg,
		CreateTable:         true,
		ReplaceOnChange:     cfg.Replace, // the stream view: NEW_IMAGE instead of KEYS_ONLY
		DisableInvalidation: true,        // the parent serves no reads
	})
	if err != nil {
		return fmt.Errorf("create cache table: %w", err)
	}
	if err := c.Close(); err != nil {
		return err
	}
	srcCfg := awsCfg
	if cfg.SourceEndpoint != "" {
		srcCfg = dynamolocal.AWSConfig(cfg.SourceEndpoint)
	}
	return createSourceTable(ctx, dynamodb.NewFromConfig(srcCfg), cfg.SourceTable)
}

type runner struct {
	cfg      config
	endpoint string
	stdout   io.Writer
	stderr   io.Writer
	sigs     chan os.Signal
	events   chan event
	children []*child
	view     *view
	ext      ParentExt // a mode's part (WithParent)

	started     time.Time
	interrupted bool   // the user asked to stop early
	ended       string // why the workload ended: endRequests, endDuration, endInterrupted, endNodesFailed

	// -outage: the cache's DynamoDB Local, stopped and resumed mid-run.
	outageBegun bool
	outageFelt  chan struct{} // closed once every node has felt the outage (-requests mode)
	feltBase    []nodeStats   // each node's counters when the outage began

	server *dynamolocal.Server
	outage outage
	forced bool // ... twice

	// -freeze: n1 stopped and continued on a schedule.
	freeze *freezer
}

func (r *runner) loop() int {
	if err := r.spawn(); err != nil {
		fmt.Fprintf(r.stderr, "demo: %v\n", err)
		r.kill()
		r.waitExits(killGrace)
		return 1
	}

	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()

	// Phase 1: every node ready (cache built, stream consumer following).
	readyBy := time.After(readyTimeout)
	for !r.all(func(c *child) bool { return c.ready || c.exited }) {
		select {
		case e := <-r.events:
			r.handle(e)
		case <-tick.C:
			r.view.render(r.children, r.phase(), false)
		case <-r.sigs:
			r.interrupted = true
			return r.shutdown()
		case <-readyBy:
			fmt.Fprintln(r.stderr, "demo: nodes not ready in time")
			return r.shutdown()
		}
	}
	if r.any(func(c *child) bool { return c.exited }) {
		return r.shutdown() // a node failed to start: the rest is pointless
	}

	// Phase 2: the workload.
	r.started = time.Now()
	r.view.started = r.started
	for _, c := range r.children {
		c.in.push(mustLine(message{T: msgStart}))
	}
	// With -requests the run ends on work done, not on the clock, so that a
	// slow (loaded) machine shows the same story as a fast one; -duration is
	// then only the cap.
	runFor := time.After(r.cfg.Duration)
	if r.cfg.Freeze > 0 {
		r.freeze = newFreezer(r.cfg, r.children, r.stderr)
		runFor = nil // the run ends with the freeze schedule
	}
	var outageAt <-chan time.Time
	if r.cfg.Outage > 0 && r.server != nil && r.cfg.Requests == 0 {
		outageAt = time.After(r.cfg.Duration / 3)
	}
	defer r.outage.wait()
	defer func() { // runs first: an outage still waiting to be felt ends now
		if r.outageFelt != nil {
			close(r.outageFelt)
			r.outageFelt = nil
		}
	}()
	for running := true; running; {
		select {
		case <-outageAt:
			r.startOutage()
		case <-r.freeze.timerC():
		case e := <-r.events:
			r.handle(e)
			r.progress()
			if r.workDone() {
				r.ended, running = endRequests, false
			}
		case <-tick.C:
			r.view.render(r.children, r.phase(), false)
		case <-r.sigs:
			r.interrupted = true
			r.ended, running = endInterrupted, false
		case <-runFor:
			r.ended, running = endDuration, false
		}
		if r.all(func(c *child) bool { return c.exited }) {
			r.ended, running = endNodesFailed, false // every node failed: nothing left to watch
		}
		if r.freeze.step(time.Now()) {
			r.ended, running = endFreezes, false
		}
	}
	return r.shutdown()
}

// Why the workload ended (summary JSON "ended").
const (
	endRequests    = "requests"    // every node made -requests requests (and -evictions were seen)
	endDuration    = "duration"    // -duration passed
	endInterrupted = "interrupted" // Ctrl-C
	endNodesFailed = "nodes failed"
	endFreezes     = "freezes done" // -freeze: the last freeze ended and was watched
)

func (r *runner) startOutage() {
	r.outageBegun = true
	var felt <-chan struct{}
	if r.cfg.Requests > 0 {
		r.outageFelt = make(chan struct{})
		felt = r.outageFelt
		r.feltBase = make([]nodeStats, len(r.children))
		for i, c := range r.children {
			if c.last != nil {
				r.feltBase[i] = *c.last
			}
		}
	}
	r.outage.start(r.server, r.cfg.Outage, felt, r.stderr)
}

// progress starts and ends a -requests mode outage on what the nodes report:
// it begins once every node has made a third of -requests, and DynamoDB comes
// back (after at least -outage) once every running node has had a write
// refused and its breaker opened since it began.
func (r *runner) progress() {
	if r.cfg.Requests == 0 || r.cfg.Outage <= 0 || r.server == nil {
		return
	}
	if !r.outageBegun {
		third := max(r.cfg.Requests/3, 1)
		if r.all(func(c *child) bool { return c.exited || (c.last != nil && c.last.requests() >= third) }) {
			r.startOutage()
		}
		return
	}
	if r.outageFelt == nil {
		return
	}
	for i, c := range r.children {
		if c.exited {
			continue
		}
		if c.last == nil || c.last.L2Unavailable <= r.feltBase[i].L2Unavailable || c.last.BreakerOpens <= r.feltBase[i].BreakerOpens {
			return
		}
	}
	close(r.outageFelt)
	r.outageFelt = nil
}

// workDone reports whether the -requests end condition holds: every running
// node has made -requests requests, the nodes have reported -evictions stream
// evictions in total, and an -outage is over.
func (r *runner) workDone() bool {
	if r.cfg.Requests == 0 {
		return false
	}
	if r.cfg.Outage > 0 && r.server != nil && !r.outage.over() {
		return false
	}
	var evictions uint64
	for _, c := range r.children {
		if c.exited {
			continue
		}
		if c.last == nil || c.last.requests() < r.cfg.Requests {
			return false
		}
		evictions += c.last.Invalidations
	}
	return evictions >= r.cfg.Evictions
}

// spawn starts the node processes.
func (r *runner) spawn() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	env := append(nodeEnv(r.endpoint), r.ext.Env...)
	for i := 0; i < r.cfg.Nodes; i++ {
		name := nodeName(i)
		cmd := exec.Command(exe, r.cfg.childArgs(name)...)
		cmd.Env = env
		cmd.SysProcAttr = nodeProcAttr()
		if r.cfg.Freeze > 0 && i == 0 {
			cmd.SysProcAttr = frozenNodeProcAttr()
		}
		c := &child{name: name, cmd: cmd, stderr: &tailBuffer{max: nodeStderrKeep}}
		cmd.Stderr = c.stderr
		if r.cfg.LogDir != "" {
			f, err := os.Create(filepath.Join(r.cfg.LogDir, name+".log"))
			if err != nil {
				return fmt.Errorf("node log: %w", err)
			}
			c.log = f // closed when the node has exited (Wait copied everything)
			cmd.Stderr = io.MultiWriter(c.stderr, f)
		}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		stdoutPipe, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start node %s: %w", name, err)
		}
		c.in = newInbox(stdin)
		r.children = append(r.children, c)
		go r.readNode(i, c, stdoutPipe)
	}
	return nil
}

// nodeName is the name of the i-th node (from 0): n1, n2, ...
func nodeName(i int) string { return fmt.Sprintf("n%d", i+1) }

// nodeEnv is the parent's environment with the AWS settings replaced: every
// node reaches DynamoDB through the SDK's own AWS_ENDPOINT_URL.
func nodeEnv(endpoint string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"AWS_ENDPOINT_URL="+endpoint,
		"AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=local",
		"AWS_SECRET_ACCESS_KEY=local",
		"AWS_EC2_METADATA_DISABLED=true",
	)
}

// readNode turns a node's stdout into events, then reports its exit.
func (r *runner) readNode(i int, c *child, out io.Reader) {
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		raw := append([]byte(nil), sc.Bytes()...)
		var m message
		if err := json.Unmarshal(raw, &m); err != nil {
			continue // not ours
		}
		r.events <- event{node: i, msg: m, raw: raw}
	}
	err := c.cmd.Wait()
	r.events <- event{node: i, exit: true, err: err}
}

func (r *runner) handle(e event) {
	c := r.children[e.node]
	if e.exit {
		c.exited, c.exitErr = true, e.err
		c.in.close()
		if c.log != nil {
			_ = c.log.Close()
		}
		return
	}
	switch e.msg.T {
	case msgReady:
		c.ready = true
		c.metricsURL = e.msg.Metrics
		if c.metricsURL != "" && !r.view.tty { // the terminal view shows it in its header
			fmt.Fprintf(r.stdout, "node %s ready · metrics %s\n", c.name, c.metricsURL)
		}
	case msgAck:
		line := append(e.raw, '\n')
		for j, o := range r.children {
			if j != e.node && !o.exited {
				o.in.push(line)
			}
		}
	case msgStats, msgFinal:
		if s := e.msg.Stats; s != nil {
			switch {
			case c.last != nil && s.Elapsed > c.last.Elapsed:
				c.rps = float64(s.requests()-c.last.requests()) / (s.Elapsed - c.last.Elapsed)
			case c.last == nil && s.Elapsed > 0:
				c.rps = float64(s.requests()) / s.Elapsed
			}
			c.prev, c.last = c.last, s
		}
		if e.msg.T == msgFinal {
			c.final = true
		}
	case msgDrained:
		c.drained = true
		c.rps = 0
	}
}

func (r *runner) phase() string {
	p := r.basePhase()
	if o := r.outage.state(); o != "" {
		p += " · " + o
	}
	if f := r.freeze.phase(); f != "" {
		p += " · " + f
	}
	return p
}

func (r *runner) basePhase() string {
	switch {
	case r.started.IsZero():
		return "starting"
	case r.any(func(c *child) bool { return c.drained || c.exited }):
		return "stopping"
	}
	return "running"
}

// shutdown stops the nodes in order: SIGTERM (stop the workload), wait until
// each has drained, relay "finish" (every ack is out, judge the last reads),
// wait for the exits. A second Ctrl-C kills them at once.
func (r *runner) shutdown() int {
	r.view.stopped = time.Now()
	r.freeze.release() // a stopped node would not see its SIGTERM
	for _, c := range r.children {
		if !c.exited {
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()
	wait := func(done func(*child) bool, d time.Duration) bool {
		deadline := time.After(d)
		for !r.all(done) {
			select {
			case e := <-r.events:
				r.handle(e)
			case <-tick.C:
				r.view.render(r.children, "stopping", false)
			case <-r.sigs:
				r.forced = true
				return false
			case <-deadline:
				return false
			}
		}
		return true
	}
	if !wait(func(c *child) bool { return c.drained || c.exited }, drainTimeout) && !r.forced {
		fmt.Fprintln(r.stderr, "demo: some nodes did not drain in time")
	}
	if !r.forced {
		for _, c := range r.children {
			c.in.push(mustLine(message{T: msgFinish}))
			c.in.closeWhenEmpty()
		}
		if !wait(func(c *child) bool { return c.exited }, exitTimeout) && !r.forced {
			fmt.Fprintln(r.stderr, "demo: some nodes did not exit in time; killing them")
		}
	}
	r.kill()
	r.waitExits(killGrace)
	r.view.render(r.children, "done", true)
	return r.report()
}

// kill SIGKILLs every node still running (its whole process group).
func (r *runner) kill() {
	for _, c := range r.children {
		if !c.exited && c.cmd.Process != nil {
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
}

func (r *runner) waitExits(d time.Duration) {
	deadline := time.After(d)
	for !r.all(func(c *child) bool { return c.exited }) {
		select {
		case e := <-r.events:
			r.handle(e)
		case <-deadline:
			return
		}
	}
}

// report prints the summary and returns the exit code.
func (r *runner) report() int {
	failed := false
	for _, c := range r.children {
		if c.exitErr != nil || (!r.started.IsZero() && !c.final) {
			failed = true
			reason := "did not report its final stats"
			if c.exitErr != nil {
				reason = c.exitErr.Error()
			}
			fmt.Fprintf(r.stderr, "demo: node %s failed: %s\n", c.name, reason)
			if tail := strings.TrimSpace(c.stderr.String()); tail != "" {
				fmt.Fprintf(r.stderr, "--- node %s stderr (tail) ---\n%s\n---\n", c.name, tail)
			}
		}
	}
	sum := summarize(r.children)
	sum.Ended = r.ended
	r.view.outage = r.outage.state()
	r.view.summary(sum, r.interrupted)
	printFields(r.stdout, r.children)
	if r.ext.Summary != nil {
		for _, l := range r.ext.Summary() {
			fmt.Fprintln(r.stdout, "  "+l)
		}
	}
	printMetricsSummary(r.stdout, r.children, r.cfg.ShowMetrics)
	printViolations(r.stdout, r.children)
	printFreezes(r.stdout, r.cfg, r.children, r.view.staleness())
	if r.cfg.ShowMetrics {
		printScrapes(r.stdout, r.children)
	}
	if r.freeze.failed() {
		failed = true
	}
	if r.ext.Err != nil {
		if err := r.ext.Err(); err != nil {
			fmt.Fprintf(r.stderr, "demo: %v\n", err)
			failed = true
		}
	}
	if r.cfg.SummaryJSON != "" {
		if err := writeSummaryJSON(r.cfg.SummaryJSON, r.cfg, sum, r.children, !failed); err != nil {
			fmt.Fprintf(r.stderr, "demo: %v\n", err)
			failed = true
		}
	}
	switch {
	case r.forced:
		return 130
	case failed:
		return 1
	case sum.Violations > 0:
		fmt.Fprintf(r.stderr, "demo: %d staleness violations\n", sum.Violations)
		return 1
	case r.started.IsZero():
		return 1 // interrupted before the workload began
	}
	return 0
}

func (r *runner) all(f func(*child) bool) bool {
	for _, c := range r.children {
		if !f(c) {
			return false
		}
	}
	return true
}

func (r *runner) any(f func(*child) bool) bool {
	for _, c := range r.children {
		if f(c) {
			return true
		}
	}
	return false
}

func mustLine(m message) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

// inbox feeds one node's stdin from an unbounded queue, so that the parent's
// loop never blocks on a node that is slow to read (the node may itself be
// blocked writing to the parent).
type inbox struct {
	mu        sync.Mutex
	cond      *sync.Cond
	queue     [][]byte
	closing   bool // close once the queue is written
	closed    bool // drop everything
	w         io.WriteCloser
	writeDone chan struct{}
}

func newInbox(w io.WriteCloser) *inbox {
	b := &inbox{w: w, writeDone: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	go b.pump()
	return b
}

func (b *inbox) push(line []byte) {
	b.mu.Lock()
	if !b.closed && !b.closing {
		b.queue = append(b.queue, line)
		b.cond.Signal()
	}
	b.mu.Unlock()
}

func (b *inbox) closeWhenEmpty() {
	b.mu.Lock()
	b.closing = true
	b.cond.Signal()
	b.mu.Unlock()
}

func (b *inbox) close() {
	b.mu.Lock()
	b.closed = true
	b.queue = nil
	b.cond.Signal()
	b.mu.Unlock()
}

func (b *inbox) pump() {
	defer close(b.writeDone)
	defer b.w.Close()
	for {
		b.mu.Lock()
		for len(b.queue) == 0 && !b.closed && !b.closing {
			b.cond.Wait()
		}
		if b.closed || len(b.queue) == 0 {
			b.mu.Unlock()
			return
		}
		q := b.queue
		b.queue = nil
		b.mu.Unlock()
		for _, line := range q {
			if _, err := b.w.Write(line); err != nil {
				b.close()
				return
			}
		}
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	t.mu.Unlock()
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

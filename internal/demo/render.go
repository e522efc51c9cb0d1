package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tieredcache/tieredcache/l2"
	"github.com/tieredcache/tieredcache/tiered"
)

// view draws the per-node tables: redrawn in place on a terminal, as plain
// periodic lines otherwise (logs, CI, pipes).
type view struct {
	cfg       config
	endpoint  string
	out       io.Writer
	tty       bool
	lines     int // lines drawn last time (terminal mode)
	started   time.Time
	stopped   time.Time // the workload was told to stop
	lastPlain time.Time
	outage    string // what -outage did, for the summary

	status func() []string // a mode's lines under the header (ParentExt.Status)
}

func newView(cfg config, endpoint string, out io.Writer) *view {
	return &view{cfg: cfg, endpoint: endpoint, out: out, tty: isTerminal(out)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (v *view) staleness() time.Duration { return v.cfg.staleness() }

// callTimeout is the nodes' CallTimeout: -call-timeout, or the library's
// default.
func (v *view) callTimeout() time.Duration {
	if v.cfg.CallTimeout > 0 {
		return v.cfg.CallTimeout
	}
	return l2.DefaultCallTimeout
}

// staleness is T: -staleness, or the library's default.
func (c config) staleness() time.Duration {
	if c.Staleness > 0 {
		return c.Staleness
	}
	return tiered.DefaultStalenessBound
}

// statusLines are the mode's lines (none without one).
func (v *view) statusLines() []string {
	if v.status == nil {
		return nil
	}
	return v.status()
}

func (v *view) render(children []*child, phase string, final bool) {
	if v.tty {
		v.renderTTY(children, phase)
		return
	}
	// Plain: a block every 5 intervals while running, and the last one.
	if !final && (v.started.IsZero() || time.Since(v.lastPlain) < 5*v.cfg.Interval-v.cfg.Interval/2) {
		return
	}
	reported := false
	for _, c := range children {
		reported = reported || c.last != nil
	}
	if !reported {
		return
	}
	v.lastPlain = time.Now()
	for _, l := range v.statusLines() {
		fmt.Fprintf(v.out, "[%4s] %s\n", v.elapsed(), l)
	}
	for _, c := range children {
		fmt.Fprintln(v.out, plainLine(c, v.elapsed()))
	}
}

func (v *view) elapsed() time.Duration {
	switch {
	case v.started.IsZero():
		return 0
	case !v.stopped.IsZero():
		return v.stopped.Sub(v.started).Truncate(time.Second)
	}
	return time.Since(v.started).Truncate(time.Second)
}

func (v *view) renderTTY(children []*child, phase string) {
	var b strings.Builder
	if v.lines > 0 {
		fmt.Fprintf(&b, "\r\x1b[%dA", v.lines) // back to the top left of the last drawing (past a ^C echo)
	}
	lines := v.tableLines(children, phase)
	for _, l := range lines {
		b.WriteString("\x1b[2K")
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.WriteString("\x1b[J")
	v.lines = len(lines)
	_, _ = io.WriteString(v.out, b.String())
}

func (v *view) header(phase string) []string {
	c := v.cfg
	rate := "unlimited"
	if c.Rate > 0 {
		rate = num(uint64(c.Rate)) + "/s"
	}
	mode := "evict on change (KEYS_ONLY)"
	if c.Replace {
		mode = "replace on change (NEW_IMAGE)"
	}
	return []string{
		fmt.Sprintf("tieredcache demo · %d nodes · %s keys (Zipf s=%g) · %g%% writes (%g%% of them deletes) · rate cap %s per node · T=%v · %s",
			c.Nodes, num(uint64(c.Keys)), c.ZipfS, c.WritePct, c.DeletePct, rate, v.staleness(), mode),
		fmt.Sprintf("DynamoDB at %s · table %s · %s %v / %s", v.endpoint, c.Table, phase, v.elapsed(), v.planned()),
	}
}

// planned is how long the run is meant to last.
func (v *view) planned() string {
	if v.cfg.Freeze > 0 {
		return fmt.Sprintf("%d freezes of n1 for %v", v.cfg.Freeze, v.cfg.FreezeFor)
	}
	return v.cfg.Duration.String()
}

// tableLines is the terminal drawing: traffic, then coherence.
func (v *view) tableLines(children []*child, phase string) []string {
	lines := v.header(phase)
	if m := metricsLine(children); m != "" {
		lines = append(lines, m)
	}
	lines = append(lines, v.statusLines()...)
	lines = append(lines, "",
		fmt.Sprintf("%-5s %-9s %7s %10s %7s %7s %7s %10s %16s %7s",
			"node", "state", "req/s", "requests", "L1 hit", "L2 hit", "loads", "DDB calls", "DDB calls saved", "errors"))
	var tot nodeStats
	var totRPS float64
	for _, c := range children {
		s := c.last
		if s == nil {
			lines = append(lines, fmt.Sprintf("%-5s %-9s", c.name, state(c)))
			continue
		}
		addTraffic(&tot, s)
		totRPS += c.rps
		lines = append(lines, trafficRow(c.name, state(c), c.rps, s))
	}
	if len(children) > 1 {
		lines = append(lines, trafficRow("all", "", totRPS, &tot))
	}
	lines = append(lines, "",
		fmt.Sprintf("%-5s %8s %20s %18s %-9s %7s %-9s %11s %10s %10s",
			"node", "evicted", "stream lag", "ack→evict p50/p99", "stream", "flushes", "breaker", "lease waits", "checked", "violations"))
	for _, c := range children {
		if s := c.last; s != nil {
			lines = append(lines, coherenceRow(c.name, s))
		}
	}
	if f := fieldsTable(children); len(f) > 0 {
		lines = append(append(lines, ""), f...)
	}
	lines = append(lines, "",
		"L1 hit: reads answered in process · L2 hit: L1 misses answered by the table · loads: source-of-truth calls",
		"DDB calls saved: requests minus DynamoDB calls made, against one DynamoDB call per request without L1",
		"stream lag: longest time since a shard was drained · ack→evict: write acknowledged anywhere → evicted here (ms)")
	return lines
}

func state(c *child) string {
	switch {
	case c.exited && c.exitErr != nil:
		return "FAILED"
	case c.exited:
		return "exited"
	case c.drained:
		return "draining"
	case c.last != nil:
		return "running"
	case c.ready:
		return "ready"
	}
	return "starting"
}

func trafficRow(name, st string, rps float64, s *nodeStats) string {
	req := s.requests()
	calls := s.L2Calls
	saved := "—"
	if req > 0 {
		saved = fmt.Sprintf("%s %s", signed(int64(req)-int64(calls)), pct(float64(int64(req)-int64(calls)), float64(req)))
	}
	return fmt.Sprintf("%-5s %-9s %7s %10s %7s %7s %7s %10s %16s %7s",
		name, st, num(uint64(rps+0.5)), num(req), l1Ratio(s), pct(float64(s.L2Hits), float64(s.L2Hits+s.L2Misses)),
		num(s.Loads), num(calls), saved, num(s.ReadErrors+s.WriteErrors+s.L2Errors+s.LoadErrors))
}

func coherenceRow(name string, s *nodeStats) string {
	lag := msText(s.StreamLagMs)
	ack := "—"
	if s.AckLagN > 0 {
		ack = fmt.Sprintf("%s/%s", msText(s.AckLagP50), msText(s.AckLagP99))
	}
	stream := s.Stream
	if s.Degraded {
		stream += "!" // degraded: serving only young L1 entries
	}
	viol := strconv.Itoa(s.Violations)
	if s.Violations > 0 {
		viol += " !"
	}
	return fmt.Sprintf("%-5s %8s %20s %18s %-9s %7s %-9s %11s %10s %10s",
		name, num(s.Invalidations), lag, ack, stream, num(s.Flushes), s.Breaker, num(s.LeaseWaits),
		num(uint64(s.Checked)), viol)
}

func plainLine(c *child, elapsed time.Duration) string {
	s := c.last
	if s == nil {
		return fmt.Sprintf("[%4s] %s %s", elapsed, c.name, state(c))
	}
	var fields strings.Builder
	for _, f := range s.Fields {
		fmt.Fprintf(&fields, " %s=%s", strings.ReplaceAll(f.Name, " ", "_"), f.Value)
	}
	return fmt.Sprintf("[%4s] %s %s req/s=%s requests=%s L1hit=%s L2hit=%s loads=%s ddb_calls=%s saved=%s errors=%s "+
		"evicted=%s ack_evict_p99=%sms stream=%s stream_lag=%sms degraded=%t flushes=%s breaker=%s lease_waits=%s checked=%s violations=%d%s",
		elapsed, c.name, state(c), num(uint64(c.rps+0.5)), num(s.requests()), l1Ratio(s),
		pct(float64(s.L2Hits), float64(s.L2Hits+s.L2Misses)), num(s.Loads), num(s.L2Calls),
		pct(float64(int64(s.requests())-int64(s.L2Calls)), float64(s.requests())),
		num(s.ReadErrors+s.WriteErrors+s.L2Errors+s.LoadErrors), num(s.Invalidations),
		msText(s.AckLagP99),
		s.Stream, msText(s.StreamLagMs), s.Degraded, num(s.Flushes), s.Breaker, num(s.LeaseWaits), num(uint64(s.Checked)), s.Violations,
		fields.String())
}

// fieldsTable is the nodes' mode fields (WithNodeStatus) as a table, with the
// columns of the first node that reports any; nil when none does.
func fieldsTable(children []*child) []string {
	var cols []string
	for _, c := range children {
		if c.last != nil && len(c.last.Fields) > 0 {
			for _, f := range c.last.Fields {
				cols = append(cols, f.Name)
			}
			break
		}
	}
	if cols == nil {
		return nil
	}
	rows := [][]string{append([]string{"node"}, cols...)}
	for _, c := range children {
		if c.last == nil {
			continue
		}
		row := []string{c.name}
		for _, name := range cols {
			v := "—"
			for _, f := range c.last.Fields {
				if f.Name == name {
					v = f.Value
				}
			}
			row = append(row, v)
		}
		rows = append(rows, row)
	}
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, v := range r {
			width[i] = max(width[i], len([]rune(v)))
		}
	}
	lines := make([]string, 0, len(rows))
	for _, r := range rows {
		var b strings.Builder
		for i, v := range r {
			if i == 0 {
				fmt.Fprintf(&b, "%-5s", v)
				continue
			}
			fmt.Fprintf(&b, " %*s", width[i], v) // fmt pads to a width in runes
		}
		lines = append(lines, b.String())
	}
	return lines
}

// printFields prints the nodes' last mode fields under the summary.
func printFields(w io.Writer, children []*child) {
	for _, l := range fieldsTable(children) {
		fmt.Fprintln(w, "  "+l)
	}
}

// l1Ratio is the share of reads answered by L1: L1 hits over the workload's
// reads. Not hits over hits+misses, because every miss is counted twice by L1
// (the caller's lookup and the flight's re-check before it reads L2).
func l1Ratio(s *nodeStats) string {
	return pct(float64(min(s.L1Hits, s.Reads)), float64(s.Reads))
}

func addTraffic(t, s *nodeStats) {
	t.Reads += s.Reads
	t.NotFound += s.NotFound
	t.Sets += s.Sets
	t.Deletes += s.Deletes
	t.ReadErrors += s.ReadErrors
	t.WriteErrors += s.WriteErrors
	t.L1Hits += s.L1Hits
	t.L1Misses += s.L1Misses
	t.L2Hits += s.L2Hits
	t.L2Misses += s.L2Misses
	t.L2Calls += s.L2Calls
	t.L2Errors += s.L2Errors
	t.L2Timeouts += s.L2Timeouts
	t.Loads += s.Loads
	t.LoadErrors += s.LoadErrors
	t.SourceReads += s.SourceReads
	t.LeaseWaits += s.LeaseWaits
	t.LeaseTimeouts += s.LeaseTimeouts
	t.LeasesAcquired += s.LeasesAcquired
	t.StaleFillsDropped += s.StaleFillsDropped
	t.Refreshes += s.Refreshes
	t.RefreshErrors += s.RefreshErrors
	t.L2Unavailable += s.L2Unavailable
	t.Invalidations += s.Invalidations
	t.Flushes += s.Flushes
	t.DegradedEpisodes += s.DegradedEpisodes
	t.BreakerOpens += s.BreakerOpens
	t.Checked += s.Checked
	t.Violations += s.Violations
	t.Unverified += s.Unverified
	t.Elapsed = max(t.Elapsed, s.Elapsed)
	t.LagMaxMs = max(t.LagMaxMs, s.LagMaxMs)
	t.AckLagP50 = max(t.AckLagP50, s.AckLagP50)
	t.AckLagP99 = max(t.AckLagP99, s.AckLagP99)
	t.AckLagMax = max(t.AckLagMax, s.AckLagMax)
	t.AckLagN += s.AckLagN
}

// summary is the run's totals, as printed and as written by -summary-json.
type summary struct {
	nodeStats
	Nodes      int `json:"nodes"`
	NodesOK    int `json:"nodes_ok"`
	NodesFinal int `json:"nodes_final"`
	// Ended says why the workload ended: "requests" (the -requests
	// condition held), "duration" (-duration passed), "interrupted" or
	// "nodes failed".
	Ended string `json:"ended"`
}

func summarize(children []*child) summary {
	var s summary
	s.Nodes = len(children)
	for _, c := range children {
		if c.exited && c.exitErr == nil {
			s.NodesOK++
		}
		if c.final {
			s.NodesFinal++
		}
		if c.last != nil {
			addTraffic(&s.nodeStats, c.last)
		}
	}
	return s
}

func (v *view) summary(s summary, interrupted bool) {
	w := v.out
	req := s.requests()
	how := fmt.Sprintf("%d of %d nodes exited cleanly", s.NodesOK, s.Nodes)
	if s.NodesOK == s.Nodes {
		how = "all nodes exited cleanly"
	}
	if interrupted {
		how += " (interrupted)"
	}
	el := s.Elapsed
	if el <= 0 {
		el = 1
	}
	fmt.Fprintf(w, "\nSummary: %.1f s, %d nodes, %s\n", s.Elapsed, s.Nodes, how)
	if v.cfg.Requests > 0 && s.Ended == endDuration {
		fmt.Fprintf(w, "  note            -duration %v passed before every node made -requests %d\n", v.cfg.Duration, v.cfg.Requests)
	}
	fmt.Fprintf(w, "  requests        %s (%s/s): %s reads (%s not found), %s sets, %s deletes\n",
		num(req), num(uint64(float64(req)/el+0.5)), num(s.Reads), num(s.NotFound), num(s.Sets), num(s.Deletes))
	fmt.Fprintf(w, "  L1              %s of reads answered in process (%s L1 hits)\n", l1Ratio(&s.nodeStats), num(s.L1Hits))
	fmt.Fprintf(w, "  L2              %s hit ratio (%s hits, %s misses)\n",
		pct(float64(s.L2Hits), float64(s.L2Hits+s.L2Misses)), num(s.L2Hits), num(s.L2Misses))
	fmt.Fprintf(w, "  overall         %s of reads served without the source of truth (%s loader calls)\n",
		pct(float64(int64(s.Reads)-int64(s.Loads)), float64(s.Reads)), num(s.Loads))
	fmt.Fprintf(w, "  DynamoDB        %s calls made vs %s without L1 (one per request): %s saved (%s)\n",
		num(s.L2Calls), num(req), signed(int64(req)-int64(s.L2Calls)), pct(float64(int64(req)-int64(s.L2Calls)), float64(req)))
	fmt.Fprintf(w, "  invalidation    %s stream evictions; ack→evict p50 %s ms, p99 %s ms, max %s ms (worst node); flushes %s; degraded episodes %s\n",
		num(s.Invalidations), msText(s.AckLagP50), msText(s.AckLagP99), msText(s.AckLagMax), num(s.Flushes), num(s.DegradedEpisodes))
	fmt.Fprintf(w, "  leases          %s taken, %s waits, %s timeouts; %s stale fills dropped; breaker opened %s times\n",
		num(s.LeasesAcquired), num(s.LeaseWaits), num(s.LeaseTimeouts), num(s.StaleFillsDropped), num(s.BreakerOpens))
	if v.cfg.RefreshAhead > 0 {
		fmt.Fprintf(w, "  refresh-ahead   %s background refreshes of entries read past %g of their TTL, %s failed\n",
			num(s.Refreshes), v.cfg.RefreshAhead, num(s.RefreshErrors))
	}
	if v.outage != "" {
		fmt.Fprintf(w, "  outage          %s: reads kept working (%s read errors); %s writes refused with ErrL2Unavailable, none lost silently\n",
			v.outage, num(s.ReadErrors), num(s.L2Unavailable))
	}
	fmt.Fprintf(w, "  errors          %s reads, %s writes, %s DynamoDB calls (%s past CallTimeout %v), %s loads\n",
		num(s.ReadErrors), num(s.WriteErrors), num(s.L2Errors), num(s.L2Timeouts), v.callTimeout(), num(s.LoadErrors))
	fmt.Fprintf(w, "  staleness       %d violations in %s reads checked against T = %v", s.Violations, num(uint64(s.Checked)), v.staleness())
	if s.Unverified > 0 {
		fmt.Fprintf(w, " (%s reads of failed writes not judged)", num(uint64(s.Unverified)))
	}
	fmt.Fprintln(w)
}

// metricsLine lists the nodes' metrics URLs ("" when no node serves any).
func metricsLine(children []*child) string {
	var parts []string
	for _, c := range children {
		if c.metricsURL != "" {
			parts = append(parts, c.name+" "+c.metricsURL)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "Prometheus metrics: " + strings.Join(parts, " · ")
}

// printMetricsSummary is the summary's line on the nodes' metrics.
func printMetricsSummary(w io.Writer, children []*child, shown bool) {
	var parts []string
	for _, c := range children {
		if c.metricsURL == "" {
			continue
		}
		p := c.name + " " + c.metricsURL
		if c.final && c.last != nil {
			p += fmt.Sprintf(" (%d tieredcache series scraped at the end)", len(c.last.MetricsScrape))
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return
	}
	hint := "; -show-metrics prints the scrapes"
	if shown {
		hint = ""
	}
	fmt.Fprintf(w, "  metrics         %s%s\n", strings.Join(parts, ", "), hint)
}

// printScrapes prints each node's final scrape of its own /metrics.
func printScrapes(w io.Writer, children []*child) {
	for _, c := range children {
		if c.last == nil || len(c.last.MetricsScrape) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n# GET %s (node %s, after its workload)\n", c.last.MetricsURL, c.name)
		for _, l := range c.last.MetricsScrape {
			fmt.Fprintln(w, l)
		}
	}
}

// printViolations lists the violations nodes spelled out.
func printViolations(w io.Writer, children []*child) {
	for _, c := range children {
		if c.last == nil {
			continue
		}
		for _, v := range c.last.Samples {
			fmt.Fprintf(w, "  violation on %s: %s\n", c.name, v)
		}
	}
}

func writeSummaryJSON(path string, cfg config, s summary, children []*child, ok bool) error {
	type nodeOut struct {
		Name   string     `json:"name"`
		Pid    int        `json:"pid"`
		Exit   string     `json:"exit"`
		Final  bool       `json:"final"`
		Stats  *nodeStats `json:"stats"`
		Stderr string     `json:"stderr,omitempty"`
		// Metrics is the URL the node served its metrics on ("" for none).
		Metrics string `json:"metrics,omitempty"`
	}
	out := struct {
		OK      bool      `json:"ok"`
		Config  config    `json:"config"`
		Summary summary   `json:"summary"`
		Nodes   []nodeOut `json:"nodes"`
	}{OK: ok, Config: cfg, Summary: s}
	for _, c := range children {
		n := nodeOut{Name: c.name, Exit: "ok", Final: c.final, Stats: c.last, Metrics: c.metricsURL}
		if c.cmd.Process != nil {
			n.Pid = c.cmd.Process.Pid
		}
		if c.exitErr != nil {
			n.Exit = c.exitErr.Error()
			n.Stderr = c.stderr.String()
		} else if !c.exited {
			n.Exit = "not exited"
		}
		out.Nodes = append(out.Nodes, n)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// num formats n with thousands separators.
func num(n uint64) string {
	s := strconv.FormatUint(n, 10)
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	pre := len(s) % 3
	if pre > 0 {
		b.WriteString(s[:pre])
	}
	for i := pre; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

func signed(n int64) string {
	if n < 0 {
		return "-" + num(uint64(-n))
	}
	return num(uint64(n))
}

func pct(a, b float64) string {
	if b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f%%", 100*a/b)
}

func msText(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return fmt.Sprintf("%.1f", v)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

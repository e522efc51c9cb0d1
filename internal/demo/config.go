package demo

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"
)

// config is every flag of the demo. The parent passes the workload flags on
// to its nodes unchanged.
type config struct {
	Nodes         int
	Duration      time.Duration
	Requests      uint64
	Evictions     uint64
	Keys          int
	L1Bytes       int64
	WritePct      float64
	DeletePct     float64
	Workers       int
	ZipfS         float64
	Rate          int
	LoaderLatency time.Duration
	Staleness     time.Duration
	Replace       bool
	RefreshAhead  float64
	L1TTL         time.Duration
	CallTimeout   time.Duration // tiered.Options.CallTimeout (0: the library's default)
	Outage        time.Duration
	Interval      time.Duration
	Endpoint      string
	SummaryJSON   string
	LogDir        string
	Freeze        int           // -freeze: how many times node n1 is frozen (0 = never)
	FreezeFor     time.Duration // how long each freeze lasts
	FreezeGap     time.Duration // how long n1 runs between freezes
	ShowMetrics   bool          // -show-metrics: print each node's final scrape of its /metrics

	// Hidden: set by the parent for its node processes.
	Child          bool
	Node           string
	Table          string
	SourceTable    string
	SourceEndpoint string        // "" = the cache's endpoint
	Role           string        // -freeze: "reader" (n1) or "writer" (the others); "" otherwise
	RampUp         time.Duration // the node's rate climbs to -rate over this long (0: at once)
}

// hiddenFlags are left out of -help: they are the parent's business.
var hiddenFlags = map[string]bool{"child": true, "node": true, "table": true, "source-table": true, "source-endpoint": true, "role": true, "ramp-up": true}

// Roles of the nodes under -freeze.
const (
	roleReader = "reader" // n1: reads only, and is the node that is frozen
	roleWriter = "writer" // the others: one Set every freezeWriteEvery, no reads
)

// freezeWriteEvery is how often each writer node writes under -freeze: about
// every 0.5 s, as in the scenario of issue 8 (T = 2 s by default).
const freezeWriteEvery = 500 * time.Millisecond

// Above 3 nodes, the defaults of -rate and -workers are shares of these
// totals (up to 3 nodes: 2000 and 8 per node), so that many node processes
// still run on a small machine with DynamoDB Local: more requests in flight
// only queue there, and calls that wait past CallTimeout fail (20 nodes of 2
// workers on 2 loaded cores: ~180 failed calls, the bridge's lease lost 4
// times; of 1 worker: none, and more requests served). Their requests also
// climb to -rate over manyNodesRampUp: every node's L1 starts cold.
const (
	defaultTotalRate    = 2000
	defaultTotalWorkers = 16
	manyNodesRampUp     = 5 * time.Second
)

// manyNodesCallTimeout is -call-timeout's default above 3 nodes. All the node
// processes share one DynamoDB Local, whose writes (UpdateItem) queue behind
// each other on a loaded machine: past the library's 500 ms they failed as
// ErrTimeout (their text ends in the SDK's "context canceled"), a few to
// hundreds per 20-node run at load averages of 15 to 26, from DynamoDB Local
// being slow, not from the nodes. A real table answers in milliseconds.
const manyNodesCallTimeout = 2 * time.Second

func parseFlags(args []string, stderr io.Writer, extra func(*flag.FlagSet)) (config, error) {
	var c config
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.Nodes, "nodes", 3, "number of node processes (each its own L1 and stream consumer), at least 1")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "how long the workload runs (with -requests: the most it may run)")
	fs.Uint64Var(&c.Requests, "requests", 0, "end the workload once every node has made this many requests, however long that takes on this machine (0 = run for -duration)")
	fs.Uint64Var(&c.Evictions, "evictions", 0, "with -requests: also keep the workload running until the nodes have reported this many stream evictions in total")
	fs.IntVar(&c.Keys, "keys", 10000, "number of distinct keys")
	fs.Int64Var(&c.L1Bytes, "l1-bytes", 1<<20, "L1 budget per node in bytes (tiered.Options.L1MaxBytes)")
	fs.Float64Var(&c.WritePct, "write-pct", 2, "percentage of requests that are writes (Set or Delete)")
	fs.Float64Var(&c.DeletePct, "delete-pct", 10, "percentage of writes that are Deletes (the rest are Sets)")
	fs.IntVar(&c.Workers, "workers", 8, "concurrent workers per node; unset, above 3 nodes: max(16/nodes, 1)")
	fs.Float64Var(&c.ZipfS, "zipf-s", 1.1, "Zipf exponent of key popularity (> 1; larger = hotter head)")
	fs.IntVar(&c.Rate, "rate", 2000, "request rate cap per node, requests/s (0 = as fast as possible); unset, above 3 nodes: 2000/nodes")
	fs.DurationVar(&c.LoaderLatency, "loader-latency", 3*time.Millisecond, "extra latency of the simulated source of truth per load")
	fs.DurationVar(&c.Staleness, "staleness", 0, "staleness bound T (tiered.Options.StalenessBound; 0 = the library default) the checker enforces")
	fs.BoolVar(&c.Replace, "replace-on-change", false, "stream with NEW_IMAGE: replace L1 entries in place instead of evicting (tiered.Options.ReplaceOnChange)")
	fs.Float64Var(&c.RefreshAhead, "refresh-ahead", 0, "refresh entries read past this fraction of their L1 TTL in the background (tiered.Options.RefreshAhead; 0 = off)")
	fs.DurationVar(&c.L1TTL, "l1-ttl", 0, "L1 entry lifetime (tiered.Options.L1TTL; 0 = the library default)")
	fs.DurationVar(&c.CallTimeout, "call-timeout", 0, "bound on each DynamoDB call's wait for progress (tiered.Options.CallTimeout; 0 = the library default, 500ms); unset, above 3 nodes: 2s, as they all share one DynamoDB Local")
	fs.DurationVar(&c.Outage, "outage", 0, "stop the cache's DynamoDB Local for this long a third of the way through the run (the source of truth stays up), to show reads surviving it; with -requests it starts once every node has made a third of them and lasts until every node has felt it (breaker opened, a write refused)")
	fs.DurationVar(&c.Interval, "interval", time.Second, "how often nodes report and the table refreshes")
	fs.StringVar(&c.Endpoint, "endpoint", "", "use this DynamoDB endpoint (e.g. a running DynamoDB Local) instead of starting DynamoDB Local")
	fs.StringVar(&c.SummaryJSON, "summary-json", "", "also write the final per-node stats to this file as JSON")
	fs.StringVar(&c.LogDir, "log-dir", "", "also write each node's log (warnings: breaker, stream, flushes) to <dir>/<node>.log")
	fs.IntVar(&c.Freeze, "freeze", 0, "freeze node n1 this many times: SIGSTOP, -freeze-for later SIGCONT, then at least -freeze-gap of running; "+
		"n1 then only reads, the other nodes only write (a Set every 0.5 s each), -keys defaults to 1, and the run ends after the last freeze (-duration is ignored)")
	fs.DurationVar(&c.FreezeFor, "freeze-for", 5*time.Second, "how long each -freeze lasts")
	fs.DurationVar(&c.FreezeGap, "freeze-gap", 2*time.Second, "how long n1 runs between two freezes (at least; the next freeze also waits until n1 has read again)")
	fs.BoolVar(&c.ShowMetrics, "show-metrics", false, "after the summary, print each node's last scrape of its /metrics (tieredcache_* series, histogram buckets left out); needs nodes that serve metrics (make demo, otel/cmd/demo)")
	fs.BoolVar(&c.Child, "child", false, "run as one node (internal)")
	fs.StringVar(&c.Node, "node", "", "node name (internal)")
	fs.StringVar(&c.Table, "table", "", "cache table (internal)")
	fs.StringVar(&c.SourceTable, "source-table", "", "source-of-truth table (internal)")
	fs.StringVar(&c.SourceEndpoint, "source-endpoint", "", "source-of-truth endpoint (internal)")
	fs.StringVar(&c.Role, "role", "", "node role under -freeze (internal)")
	fs.DurationVar(&c.RampUp, "ramp-up", 0, "the node's rate climbs to -rate over this long (internal)")
	if extra != nil {
		extra(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: demo [flags]\n\n"+
			"Starts DynamoDB Local, runs -nodes processes that share one tieredcache table under a Zipf\n"+
			"read-mostly workload, shows what each does, and checks every read against the staleness bound.\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			if hiddenFlags[f.Name] {
				return
			}
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(fs.Output(), "  -%s %s\n    \t%s (default %s)\n", f.Name, name, usage, f.DefValue)
		})
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.Freeze > 0 && !c.Child && !set["keys"] {
		c.Keys = 1 // one hot key: every read after a resume is of a key written during the freeze
	}
	if !c.Child && c.Nodes > 3 {
		c.RampUp = manyNodesRampUp
		if !set["rate"] {
			c.Rate = max(defaultTotalRate/c.Nodes, 1)
		}
		if !set["workers"] {
			c.Workers = max(defaultTotalWorkers/c.Nodes, 1)
		}
		if !set["call-timeout"] {
			c.CallTimeout = manyNodesCallTimeout
		}
	}
	return c, c.validate()
}

func (c config) validate() error {
	switch {
	case c.Nodes < 1:
		return errors.New("-nodes must be at least 1")
	case c.Duration <= 0:
		return errors.New("-duration must be positive")
	case c.Keys < 1:
		return errors.New("-keys must be at least 1")
	case c.L1Bytes < 0:
		return errors.New("-l1-bytes must not be negative")
	case c.WritePct < 0 || c.WritePct > 100:
		return errors.New("-write-pct must be in [0,100]")
	case c.DeletePct < 0 || c.DeletePct > 100:
		return errors.New("-delete-pct must be in [0,100]")
	case c.Workers < 1:
		return errors.New("-workers must be at least 1")
	case c.ZipfS <= 1:
		return errors.New("-zipf-s must be greater than 1")
	case c.Rate < 0:
		return errors.New("-rate must not be negative")
	case c.RefreshAhead < 0 || c.RefreshAhead >= 1:
		return errors.New("-refresh-ahead must be in [0,1)")
	case c.Outage < 0 || c.L1TTL < 0 || c.CallTimeout < 0:
		return errors.New("durations must not be negative")
	case c.Outage > 0 && c.Endpoint != "":
		return errors.New("-outage needs the demo to run DynamoDB Local itself (no -endpoint)")
	case c.Evictions > 0 && c.Requests == 0:
		return errors.New("-evictions needs -requests")
	case c.Outage > 0 && c.Outage >= c.Duration/2:
		return errors.New("-outage must be shorter than half of -duration")
	case c.LoaderLatency < 0 || c.Staleness < 0:
		return errors.New("durations must not be negative")
	case c.Freeze < 0 || c.FreezeFor < 0 || c.FreezeGap < 0:
		return errors.New("-freeze, -freeze-for and -freeze-gap must not be negative")
	case c.Freeze > 0 && c.Nodes < 2:
		return errors.New("-freeze needs at least 2 nodes (n1 reads and is frozen, the others write)")
	case c.Freeze > 0 && c.FreezeFor <= 0:
		return errors.New("-freeze-for must be positive")
	case c.Freeze > 0 && c.Outage > 0:
		return errors.New("-freeze and -outage cannot be combined")
	case c.Role != "" && c.Role != roleReader && c.Role != roleWriter:
		return fmt.Errorf("unknown -role %q", c.Role)
	case c.Interval < 10*time.Millisecond:
		return errors.New("-interval must be at least 10ms")
	case c.Child && (c.Node == "" || c.Table == "" || c.SourceTable == ""):
		return errors.New("-child needs -node, -table and -source-table")
	}
	return nil
}

// childArgs are the flags a node process gets. Under -freeze, node n1 is
// the reader and the others are writers, each with its own workload.
func (c config) childArgs(node string) []string {
	if c.Freeze > 0 {
		if node == "n1" {
			c.Role, c.WritePct = roleReader, 0
		} else {
			c.Role, c.WritePct, c.DeletePct, c.Workers = roleWriter, 100, 0, 1
			c.Rate = int(time.Second / freezeWriteEvery)
		}
	}
	return []string{
		"-role", c.Role,
		"-ramp-up", c.RampUp.String(),
		"-child", "-node", node, "-table", c.Table, "-source-table", c.SourceTable,
		"-keys", strconv.Itoa(c.Keys),
		"-l1-bytes", strconv.FormatInt(c.L1Bytes, 10),
		"-write-pct", strconv.FormatFloat(c.WritePct, 'g', -1, 64),
		"-delete-pct", strconv.FormatFloat(c.DeletePct, 'g', -1, 64),
		"-workers", strconv.Itoa(c.Workers),
		"-zipf-s", strconv.FormatFloat(c.ZipfS, 'g', -1, 64),
		"-rate", strconv.Itoa(c.Rate),
		"-loader-latency", c.LoaderLatency.String(),
		"-staleness", c.Staleness.String(),
		"-replace-on-change=" + strconv.FormatBool(c.Replace),
		"-refresh-ahead", strconv.FormatFloat(c.RefreshAhead, 'g', -1, 64),
		"-l1-ttl", c.L1TTL.String(),
		"-call-timeout", c.CallTimeout.String(),
		"-source-endpoint", c.SourceEndpoint,
		"-interval", c.Interval.String(),
		// The parent ends the workload; this is only the node's own backstop.
		"-duration", (c.Duration + time.Duration(c.Freeze)*(c.FreezeFor+c.FreezeGap+time.Minute) + 2*time.Minute).String(),
	}
}

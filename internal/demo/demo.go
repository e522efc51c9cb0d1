// Package demo is the tieredcache demo: several node processes against one
// DynamoDB table, each showing what it does. It is a package rather than a
// command so that several mains can run it: cmd/demo in the core module (no
// metrics), otel/cmd/demo in the otel module, whose node hook serves each
// node's metrics as Prometheus text through OpenTelemetry, and
// fanout/cmd/demo in the fanout module, whose mode hooks (WithFlags,
// WithParent, WithCacheOptions, WithNodeStatus) run it in fan-out mode over
// an embedded NATS server; the core module depends on neither.
//
// The parent process starts DynamoDB Local (installing it on first use),
// creates the cache table and a source-of-truth table, and starts -nodes
// copies of its own executable with the hidden -child flag: the main that
// called Run must therefore call it again, with the same options, when it is
// re-executed. Each node is a separate OS process with its own L1 and its own
// stream consumer; the nodes share nothing but DynamoDB. Each drives a Zipf,
// read-mostly workload (GetOrLoad, with -write-pct% Sets and Deletes) and
// reports its counters as JSON lines on stdout; the parent draws them as a
// table, relays every node's write acknowledgements to every other node, and
// prints a summary at the end.
//
// Every node checks each of its reads online against every acknowledged
// write (internal/history): a read that started more than T after a newer
// write was acknowledged anywhere, yet returned an older value, is a
// violation. The demo exits non-zero when a node fails or a violation is
// found.
//
// With -freeze N, node n1 only reads and the others only write, and the
// parent freezes n1 (SIGSTOP, then SIGCONT) N times: the summary shows, per
// resume, whether n1 served reads staler than T (issue 8, item 1).
package demo

import (
	"context"
	"errors"
	"flag"
	"io"
	"time"

	"github.com/tieredcache/tieredcache/tiered"
)

// NodeHook is called by each node process once its cache is built, before
// the workload starts. It returns the URL of the node's metrics ("" for
// none), which the node reports to the parent, and a stop function that the
// node calls exactly once, before it closes the cache. An error fails the
// node.
type NodeHook func(cache *tiered.Cache[string], node string) (metricsURL string, stop func(), err error)

// CacheOptionsHook may change a node's cache options (for example to
// instrument its DynamoDB client) before the node builds its cache.
type CacheOptionsHook func(node string, o *tiered.Options[string]) error

// Option configures Run.
type Option func(*runOptions)

type runOptions struct {
	nodeHook  NodeHook
	cacheOpts CacheOptionsHook
	flags     func(*flag.FlagSet)
	parent    ParentHook
	status    func() []Field
}

// A mode is what another module adds to the demo without the core module
// depending on it (fan-out: fanout/cmd/demo, with NATS): its own flags
// (WithFlags), a part in the parent process (WithParent: set-up before the
// nodes start, lines in the live view and the summary, a verdict), and in
// each node process its cache options (WithCacheOptions, e.g. the
// invalidation source), its node hook and the fields it reports
// (WithNodeStatus).

// WithFlags registers a mode's own flags on the demo's flag set. Only the
// parent sees them: node processes learn the mode's settings from
// ParentExt.Env.
func WithFlags(f func(fs *flag.FlagSet)) Option { return func(o *runOptions) { o.flags = f } }

// ParentSetup is what a parent hook learns of the run.
type ParentSetup struct {
	Endpoint  string        // the DynamoDB endpoint the nodes use
	Table     string        // the cache table (created)
	Nodes     []string      // the node names, n1 first
	Staleness time.Duration // T
}

// ParentExt is a mode's part of the parent process; every field is optional.
type ParentExt struct {
	// Env is added to each node process's environment.
	Env []string
	// Status returns lines drawn under the live view's header, each time the
	// view is drawn (and once more at the end).
	Status func() []string
	// Summary returns lines printed at the end of the summary.
	Summary func() []string
	// Err is asked once every node has exited: an error fails the run.
	Err func() error
	// Close runs once every node has exited, after Summary and Err.
	Close func()
}

// ParentHook runs in the parent once the tables exist, before the nodes
// start. An error fails the run before any node starts.
type ParentHook func(ctx context.Context, s ParentSetup) (*ParentExt, error)

// WithParent sets the parent hook.
func WithParent(h ParentHook) Option { return func(o *runOptions) { o.parent = h } }

// Field is one named value a node reports with its stats.
type Field struct {
	Name  string `json:"n"`
	Value string `json:"v"`
}

// WithNodeStatus sets a function each node process calls for every stats
// report (after its cache is built): its fields are shown per node in the
// live view and the summary, and kept in -summary-json (stats.fields).
func WithNodeStatus(f func() []Field) Option { return func(o *runOptions) { o.status = f } }

// WithNodeHook sets the hook each node process calls after building its
// cache. When it returns a metrics URL, the parent shows it per node, and the
// node scrapes it once after its workload and final check, before closing
// the cache: the summary JSON holds that scrape (the tieredcache_* series,
// histogram buckets left out), and -show-metrics prints it.
func WithNodeHook(h NodeHook) Option { return func(o *runOptions) { o.nodeHook = h } }

// WithCacheOptions sets a hook each node process calls on its cache options
// before building the cache.
func WithCacheOptions(h CacheOptionsHook) Option { return func(o *runOptions) { o.cacheOpts = h } }

// Run runs the demo with the command-line arguments args (without the
// program name) and returns the process exit code: 0 on success, 1 when a
// node failed or a violation was found, 2 on bad flags, 130 when forced to
// stop. It is the parent unless args hold the hidden -child flag.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer, opts ...Option) int {
	var ro runOptions
	for _, o := range opts {
		o(&ro)
	}
	cfg, err := parseFlags(args, stderr, ro.flags)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		io.WriteString(stderr, "demo: "+err.Error()+"\n")
		return 2
	}
	if cfg.Child {
		return runNode(cfg, ro, stdin, stdout, stderr)
	}
	return runParent(cfg, ro, stdout, stderr)
}

// Package demo is the tieredcache demo: several node processes against one
// DynamoDB table, each showing what it does. It is a package rather than a
// command so that two mains can run it: cmd/demo in the core module (no
// metrics) and otel/cmd/demo in the otel module, whose node hook serves each
// node's metrics as Prometheus text through OpenTelemetry without the core
// module depending on OpenTelemetry.
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
	"errors"
	"flag"
	"io"

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
}

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
	cfg, err := parseFlags(args, stderr)
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
	return runParent(cfg, stdout, stderr)
}

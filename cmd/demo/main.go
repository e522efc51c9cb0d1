// Command demo runs several tieredcache nodes against one DynamoDB table and
// shows what each does.
//
// The parent process starts DynamoDB Local (installing it on first use),
// creates the cache table and a source-of-truth table, and starts -nodes
// copies of itself with the hidden -child flag. Each node is a separate OS
// process with its own L1 and its own stream consumer; the nodes share
// nothing but DynamoDB. Each drives a Zipf, read-mostly workload (GetOrLoad,
// with -write-pct% Sets and Deletes) and reports its counters as JSON lines on
// stdout; the parent draws them as a table, relays every node's write
// acknowledgements to every other node, and prints a summary at the end.
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
//
//	go run ./cmd/demo -nodes 3 -duration 30s
//	make demo DEMO_ARGS='-nodes 4 -duration 1m -write-pct 5'
package main

import (
	"errors"
	"flag"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		io.WriteString(stderr, "demo: "+err.Error()+"\n")
		return 2
	}
	if cfg.Child {
		return runNode(cfg, stdin, stdout, stderr)
	}
	return runParent(cfg, stdout, stderr)
}

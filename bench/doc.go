// Package bench holds the go test -bench suites run by `make bench`: the L1
// hit path against raw Ristretto, the L2 hit path, a cold-key stampede and the
// cross-node invalidation lag. The benchmarks live in the _test files; the
// Zipf key sequences they use come from internal/zipf.
package bench

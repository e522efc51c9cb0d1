// Package peers compares tieredcache's L1-hit path with the caches users
// would pick instead, in one benchmark run (BenchmarkPeers): sturdyc, raw
// Ristretto, and Redis client-side caching through rueidis and go-redis v9 on
// a local redis-server that the benchmark starts and stops itself.
//
// It is a nested module so that the core module does not depend on any of
// them. Run it with `make bench-report` (which also installs redis-server) or
//
//	cd bench/peers && go test -run '^$' -bench . -benchtime 1s
//
// Figures are ratios measured in one run on one machine, not absolute claims.
package peers

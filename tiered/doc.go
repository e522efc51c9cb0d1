// Package tiered is the public face of tieredcache: a two-tier read cache
// for horizontally scaled services.
//
// Each process keeps an in-memory L1 (Ristretto, package l1) in front of one
// DynamoDB table shared by all processes (L2, package l2). A miss in both calls
// the caller's Loader. When any process writes a key, the table's DynamoDB
// Stream (package invalidation) tells every other process to drop its L1 copy.
//
// Guarantees, exactly:
//
//   - Collapsing: at most one loader call per key per process at a time,
//     whatever the number of concurrent callers of GetOrLoad, GetMany and
//     refresh-ahead; one L2 read per key per process for concurrent
//     GetOrLoads (concurrent Gets share another). With leases on (the
//     default), at most one loader call per key across all processes while
//     the lease holder is alive. A caller joins a load in flight only while
//     its key has not changed on this node since the load began and the load
//     is younger than T/2 (else it starts its own): no caller gets a value
//     read before a write its node knew of, or read more than T/2 before it
//     asked.
//   - Read-your-writes: after Set or Delete returns nil on a node, Get on that
//     node returns the new value (or ErrNotFound).
//   - Staleness bound: while the stream consumer is healthy, no node serves a
//     value more than Options.StalenessBound (T) after a newer write was
//     acknowledged anywhere, provided DynamoDB publishes stream records within
//     T/2 (typically well under a second). Trust is decided on each read from
//     a monotonic clock reading compared with a trusted-until time: T/2 past
//     the start of the least recent of the shards' last draining polls,
//     which the consumer recomputes after each such poll: once it has lapsed (the consumer is failing,
//     or the process was frozen), L1 entries older than T/2 are not served
//     until the consumer catches up and L1 is flushed, even before any
//     background goroutine has run again. Every L1 entry dies within L1MaxTTL
//     whatever happens.
//   - No stale fill: a fill that began before an invalidation of its key never
//     lands after it in L1, nor (with leases) in L2.
//   - Outages: a DynamoDB failure never fails a GetOrLoad whose loader works.
//
// Concurrency: every method of Cache is safe for concurrent use, Close too.
package tiered

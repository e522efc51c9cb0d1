// Package fanout keeps the L1s of a large fleet coherent with one stream
// reader: a Bridge (elected through a lease item in the cache table) reads
// the table's DynamoDB Stream once and publishes batches of changed keys
// through a Transport (NATS core pub/sub here), and each pod's Pod, set as
// tiered.Options.Invalidation, applies them and keeps trust from the
// watermark they carry, reading no stream itself.
//
// See the README's "Fan-out" section for how to run it, the lease timing and
// the trust arithmetic.
package fanout

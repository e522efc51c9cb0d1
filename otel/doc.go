// Package tieredotel exports a tieredcache Cache's Stats as OpenTelemetry
// metrics, and traces and times what a miss does, without adding anything to
// the L1-hit path. It is a module of its own
// (github.com/tieredcache/tieredcache/otel), so that the core module does not
// depend on OpenTelemetry.
//
//   - Register: observable instruments for everything in tiered.Stats, read
//     once per collection through one callback (a Stats call).
//   - InstrumentDynamoDB: an aws-sdk-go-v2 client option that makes a span
//     and records a duration per DynamoDB call (pass it to l2.NewClient, and
//     give the client to tiered.Options.DynamoDB).
//   - InstrumentLoader and InstrumentBatchLoader: a span and a duration per
//     loader call.
//
// Tracing a miss: a Cache calls DynamoDB and the loader only on a miss, with
// a context that keeps the caller's values (the load runs on
// context.WithoutCancel of the first caller's ctx). So the L2 read, the lease
// write, the loader call and the fill write of a miss are children of the
// span in the ctx given to GetOrLoad (or GetMany): start one there if you
// want them grouped. Hits make no span and record nothing. Concurrent misses
// of one key share one flight: its children hang under the first caller's
// span. Background work (refresh-ahead on a hit's context values, pending
// retries and lease releases on the cache's own context) makes spans of its
// own, rooted where its context is.
//
// Keys and values are never put in spans or attributes.
package tieredotel

// Package invalidation follows a DynamoDB table's stream and tells a Sink which
// partition keys changed, when everything must be dropped ("lost track"), and
// whether the caller may trust what it cached.
//
// It knows nothing about the cache it serves: the Sink is the whole interface.
//
// # Guarantees
//
//   - Changed is called in stream order for each shard. A parent shard is read
//     to its end before any of its children; a child with several parents (a
//     merge) starts after all of them. Delivery is at-least-once: a record may
//     be reported twice (after an iterator is renewed or a quirk is worked
//     around), never silently skipped while the consumer reports itself trusted.
//   - Shards open when Start runs are read from LATEST; shards first seen later
//     are read from TRIM_HORIZON, so nothing written after Start returns is missed.
//   - Whenever the position in the stream is lost (TrimmedDataAccessException,
//     an iterator that expired or broke before any record was handled, a new
//     stream ARN, the stream disabled, a shard that vanished before it was read
//     to its end, a record that cannot be decoded), Flush is called at once, and
//     trust is withdrawn (TrustUntil with a zero time) too unless the loss was a
//     single undecodable record.
//   - A shard whose calls answer ResourceNotFoundException is given up (Flush
//     with ErrPositionLost) only when DescribeTable still names the same stream
//     and the shard has been missing from at least two full DescribeStream
//     listings spanning ShardListInterval: DescribeStream is eventually
//     consistent, and a brand-new shard may not be listed yet. Its children,
//     and whatever else the stream lists, are then read from TRIM_HORIZON, and
//     trust returns once they have been drained.
//   - Start fails at once, with a *StartError, on errors that retrying cannot
//     fix (access denied, unrecognised credentials, no such table, an invalid
//     request); it retries throttling, 5xx and transport errors until its ctx
//     ends.
//   - Trust is a deadline, not a flag: after each poll that drained a shard,
//     TrustUntil gets the oldest caught-up time of all shards (the start of
//     the last draining poll) plus StaleAfter. A sink compares it with its own
//     clock reading at each use, so trust lapses by itself when polls stop
//     completing, even while no goroutine of this package runs (a frozen
//     process). Trust is withdrawn at once (a zero until) when the position
//     is lost or the stream is gone. When trust is granted again after a
//     withdrawal or a lapse, the sink gets TrustUntil(zero) if it did not
//     already, then Flush(ErrRecovered), then the new until, in that order,
//     after the new positions are in place. So while trusted, every change
//     older than StaleAfter (plus the stream's own propagation delay) has been
//     reported.
//   - Sink methods are never called concurrently with each other, and never
//     after Close returns.
//
// # Cost and limits
//
// GetRecords is called per shard every PollInterval while the shard is quiet,
// at once again while records keep coming. Every call is billed, empty ones too.
// AWS throttles (LimitExceededException) when more than two processes read one
// shard at once: that caps how many processes can follow one table this way.
// DescribeTable runs every DescribeInterval; DescribeStream (at most 10 calls a
// second per account) runs every ShardListInterval and when a shard closes, and
// this package never issues more than 10 a second itself. A shard answering
// ResourceNotFoundException costs a DescribeTable and a listing per retry
// (shared by every shard that failed at about the same time), with backoff.
//
// Keys and values are never logged.
package invalidation

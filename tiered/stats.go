package tiered

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tieredcache/tieredcache/invalidation"
)

// Stats is a snapshot of what a Cache has done since New, grouped by concern
// (in the manner of database/sql.DBStats). Counters only grow; the fields
// documented as "now" are states read when Stats is called. Each event is
// counted in exactly one place.
type Stats struct {
	L1      L1Stats      // the in-process tier
	L2      L2Stats      // the DynamoDB table
	Loads   LoadStats    // loader calls
	Leases  LeaseStats   // cross-node fill leases
	Refresh RefreshStats // refresh-ahead
	Writes  WriteStats   // Set, SetWithTTL and Delete
	Pending PendingStats // failed invalidations kept for retry
	Breaker BreakerStats // the circuit breaker around DynamoDB
	Stream  StreamStats  // the stream consumer and what it did to L1
}

// L1Stats describes the in-process tier (package l1).
type L1Stats struct {
	// Hits counts reader lookups (Get, GetOrLoad, GetMany) served from L1.
	Hits uint64
	// Misses counts reader lookups L1 did not serve, Bypassed included.
	Misses uint64
	// Bypassed counts entries a lookup found but did not serve: older than
	// T/2 while trust in L1 had lapsed (see Stream.Degraded). Each is also
	// in Misses, never in Hits.
	Bypassed uint64
	// Sets counts entries stored (fills, writes, replacements).
	Sets uint64
	// SetsDropped counts stores Ristretto dropped (its set buffer was full).
	SetsDropped uint64
	// SetsRejected counts stores refused by admission or for their size.
	SetsRejected uint64
	// SetsFenced counts fills refused because the key changed (or L1 was
	// flushed) while they were in flight.
	SetsFenced uint64
	// Evictions counts entries evicted to make room.
	Evictions uint64
	// Expirations counts expired entries removed.
	Expirations uint64
	// BytesUsed is the budget in use now (len(key) + size + overhead per
	// entry); MaxBytes is the budget (Options.L1MaxBytes).
	BytesUsed, MaxBytes int64
	// Items is the number of live entries now.
	Items int64
}

// L2Stats describes the DynamoDB table tier.
type L2Stats struct {
	// Hits counts L1 misses answered by an L2 item.
	Hits uint64
	// Misses counts L2 reads that found nothing usable (absent, deleted,
	// expired or leased).
	Misses uint64
	// Corrupt counts lookups (a key of a Get/GetOrLoad flight, of a GetMany,
	// of a refresh, or a stream record) that met an item they could not use:
	// malformed, or undecodable (the Codec's Decode failed or panicked).
	// Once per key per lookup; such a key is a miss.
	Corrupt uint64
	// TooLarge counts loaded values too large for an item, kept in L1 only.
	TooLarge uint64
	// Calls counts DynamoDB API calls on the data path: every BatchGetItem
	// page and UnprocessedKeys retry, not the SDK's own retries inside a
	// call, not table setup or the stream. Calls the breaker refused are
	// not made and not counted.
	Calls uint64
	// Errors counts Calls that failed (timeouts, throttling, outage; not
	// failed conditions); Throttles those that were throttled; Timeouts
	// those that ran out of Options.CallTimeout (ErrTimeout).
	Errors, Throttles, Timeouts uint64
	// UnprocessedRetries counts BatchGetItem calls made only to retry
	// UnprocessedKeys (also in Calls).
	UnprocessedRetries uint64
	// ConditionFailures counts conditional writes (fills, leases, pending
	// tombstones) that did not land: the item had changed.
	ConditionFailures uint64
	// Repairs counts corrupt or foreign items a write replaced.
	Repairs uint64
	// ByOp splits Calls, Errors and Throttles by DynamoDB API operation:
	// always GetItem, BatchGetItem and UpdateItem, and any other operation
	// once called. The sums over ByOp are Calls, Errors and Throttles.
	ByOp map[string]L2OpStats
}

// L2OpStats counts the data-path calls of one DynamoDB API operation.
type L2OpStats struct {
	Calls, Errors, Throttles uint64
}

// LoadStats describes loader calls.
type LoadStats struct {
	// Calls counts loader calls, a BatchLoader call once.
	Calls uint64
	// Errors counts loader calls that failed (nothing cached), Panics those
	// that panicked (also in Errors).
	Errors, Panics uint64
	// Batches counts BatchLoader calls (also in Calls); BatchKeys the keys
	// passed to them.
	Batches, BatchKeys uint64
	// Joined counts keys GetMany took from a load in flight, or GetOrLoad
	// from a GetMany's, instead of loading them again.
	Joined uint64
	// StaleFillsDropped counts loads not stored because the key was written
	// or deleted while they ran.
	StaleFillsDropped uint64
	// StaleServed counts values served with a *StaleError after a loader
	// error (Options.StaleIfError).
	StaleServed uint64
	// Refetches counts flights that read L2 again because what they had
	// read was current more than T/2 before they ended (DynamoDB slow, or
	// the process frozen): their callers never get a value that old.
	Refetches uint64
}

// LeaseStats describes cross-node fill leases.
type LeaseStats struct {
	// Acquired counts leases this node took.
	Acquired uint64
	// Waits counts times this node waited on another node's lease;
	// Timeouts the waits that ran out (the loader was then called anyway).
	Waits, Timeouts uint64
}

// RefreshStats describes refresh-ahead.
type RefreshStats struct {
	// Started counts refreshes started (at most one per entry).
	Started uint64
	// FromL2 counts refreshes answered by a newer L2 version (another node
	// refreshed first).
	FromL2 uint64
	// Errors counts refreshes whose loader or write failed (the current
	// entry stays).
	Errors uint64
}

// WriteStats describes Set, SetWithTTL and Delete.
type WriteStats struct {
	Calls  uint64 // calls made
	Errors uint64 // calls that returned an error
}

// PendingStats describes pending invalidations (see the README, "A failed
// write is not forgotten"): Set/Delete failures with ErrL2Unavailable, kept
// and retried in the background.
type PendingStats struct {
	Now        uint64 // pending now
	Added      uint64 // failures kept for retry
	Retries    uint64 // retry attempts made
	Landed     uint64 // retries whose version-conditioned tombstone landed
	Superseded uint64 // made moot: the key was written since (by anyone), or holds nothing live
	Expired    uint64 // given up after L2TTL (the old item has expired by then)
	Dropped    uint64 // failures not kept: the set was full (MaxPendingInvalidations); logged too
	Abandoned  uint64 // still pending when Close's PendingDrainTimeout ran out
}

// BreakerStats describes the circuit breaker around DynamoDB.
type BreakerStats struct {
	State string // now: closed, half-open or open
	Opens uint64 // times it opened
}

// StreamStats describes the stream consumer (package invalidation) and what
// it did to L1. With Options.DisableInvalidation, Enabled is false and so is
// every other field. With Options.Invalidation, the consumer's fields come
// from the source's Stats (invalidation.StatsSource), zero if it has none.
type StreamStats struct {
	// Enabled: a stream consumer or Options.Invalidation runs
	// (Options.DisableInvalidation unset).
	Enabled bool
	// Degraded: trust in L1 does not hold now, as the hit path decides it
	// from the clock: only L1 entries younger than T/2 are served.
	Degraded bool
	// DegradedEpisodes counts times trust was withdrawn (the consumer
	// unhealthy, or a lapse seen on recovery).
	DegradedEpisodes uint64
	// Trusted: trust was granted and not withdrawn; it may still have
	// lapsed (Degraded says whether it holds now).
	Trusted bool
	// StreamArn is the stream followed now ("" when none).
	StreamArn string
	// Lag is the largest time since a followed shard was last drained:
	// every change older than Lag (plus propagation into the stream) has
	// been applied. The precise health figure.
	Lag time.Duration
	// Shards is the number of shards read now; ShardsCompleted those read
	// to their end, ShardsLost those given up because they vanished first
	// (each flushed L1).
	Shards                      int
	ShardsCompleted, ShardsLost uint64
	// Records counts stream records received; Changes the changes of keys
	// they reported (every namespace).
	Records, Changes uint64
	// Invalidations counts L1 entries dropped because the stream said their
	// key changed; Replacements those replaced in place (ReplaceOnChange).
	Invalidations, Replacements uint64
	// Flushes counts whole-L1 flushes (the consumer lost track of the stream).
	Flushes uint64
	// Errors counts failed stream API calls, Throttles the throttled ones.
	Errors, Throttles uint64
	// IteratorsRenewed counts shard iterators replaced after expiry or
	// rejection; Quirks DynamoDB Local oddities worked around.
	IteratorsRenewed, Quirks uint64
	// LastError is the text of the last stream API error ("" if none).
	LastError string
	// ReaderLimitHits counts stream reads refused with LimitExceededException
	// (more than two processes read one shard: AWS's limit; also in
	// Throttles). ReaderLimited: three or more within the last minute; the
	// node also logs a warning pointing to fan-out (README, Fan-out).
	ReaderLimitHits uint64
	ReaderLimited   bool
	// RecordLag, RecordLagMax and RecordLagMean are record ages when applied
	// (now minus the record's ApproximateCreationDateTime): the last, the
	// largest and the mean over this cache's records. Coarse: AWS rounds
	// that time down to the second, DynamoDB Local to the minute, so they
	// overstate the lag; Lag is the precise figure, and bench's
	// BenchmarkInvalidationLag measures write ack -> eviction.
	RecordLag, RecordLagMax, RecordLagMean time.Duration
}

type counters struct {
	l2Hits, l2Misses, l2Corrupt                                  atomic.Uint64
	loads, loadErrors, loadPanics, writes, writeErrors           atomic.Uint64
	leasesAcquired, leaseWaits, leaseTimeouts, staleFillsDropped atomic.Uint64
	l2TooLarge, breakerOpens                                     atomic.Uint64
	refreshes, refreshesFromL2, refreshErrors, staleServed       atomic.Uint64
	degradedBypasses, refetches                                  atomic.Uint64
	batchLoads, batchLoadKeys, loadsJoined                       atomic.Uint64
	invalidations, replacements, degradedEpisodes                atomic.Uint64

	lagMu                   sync.Mutex
	lagLast, lagMax, lagSum time.Duration
	lagN                    int64
}

func (s *counters) observeLag(d time.Duration) {
	if d < 0 {
		d = 0
	}
	s.lagMu.Lock()
	s.lagLast = d
	s.lagMax = max(s.lagMax, d)
	s.lagSum += d
	s.lagN++
	s.lagMu.Unlock()
}

// sourceStats is the state of what invalidates L1: the stream consumer, or
// Options.Invalidation (its Stats when it implements
// invalidation.StatsSource, zero otherwise). enabled is false when neither
// runs.
func (c *Cache[V]) sourceStats() (enabled bool, cs invalidation.Stats) {
	switch {
	case c.consumer != nil:
		return true, c.consumer.Stats()
	case c.source != nil:
		if s, ok := c.source.(invalidation.StatsSource); ok {
			cs = s.Stats()
		}
		return true, cs
	}
	return false, cs
}

// u64 converts a counter kept as int64 by another package.
func u64(n int64) uint64 { return uint64(max(n, 0)) }

// Stats returns a snapshot. It is cheap enough to call every second.
func (c *Cache[V]) Stats() Stats {
	s := &c.stats
	l1s := c.l1.Stats()
	l2s := c.l2.Stats()
	st := Stats{
		L1: L1Stats{
			Hits: l1s.Hits, Misses: l1s.Misses, Bypassed: s.degradedBypasses.Load(),
			Sets: l1s.Sets, SetsDropped: l1s.SetsDropped, SetsRejected: l1s.SetsRejected,
			SetsFenced: l1s.SetsFenced, Evictions: l1s.Evictions, Expirations: l1s.Expirations,
			BytesUsed: l1s.BytesUsed, MaxBytes: l1s.MaxBytes, Items: l1s.Items,
		},
		L2: L2Stats{
			Hits: s.l2Hits.Load(), Misses: s.l2Misses.Load(), Corrupt: s.l2Corrupt.Load(),
			TooLarge: s.l2TooLarge.Load(), Calls: u64(l2s.Calls), Errors: u64(l2s.Errors),
			Throttles: u64(l2s.Throttles), Timeouts: u64(l2s.Timeouts), UnprocessedRetries: u64(l2s.UnprocessedRetries),
			ConditionFailures: u64(l2s.ConditionFailures), Repairs: u64(l2s.Repairs),
			ByOp: make(map[string]L2OpStats, len(l2s.ByOp)),
		},
		Loads: LoadStats{
			Calls: s.loads.Load(), Errors: s.loadErrors.Load(), Panics: s.loadPanics.Load(),
			Batches: s.batchLoads.Load(), BatchKeys: s.batchLoadKeys.Load(), Joined: s.loadsJoined.Load(),
			StaleFillsDropped: s.staleFillsDropped.Load(), StaleServed: s.staleServed.Load(),
			Refetches: s.refetches.Load(),
		},
		Leases: LeaseStats{
			Acquired: s.leasesAcquired.Load(), Waits: s.leaseWaits.Load(), Timeouts: s.leaseTimeouts.Load(),
		},
		Refresh: RefreshStats{
			Started: s.refreshes.Load(), FromL2: s.refreshesFromL2.Load(), Errors: s.refreshErrors.Load(),
		},
		Writes: WriteStats{Calls: s.writes.Load(), Errors: s.writeErrors.Load()},
		Pending: PendingStats{
			Now:        uint64(max(c.pend.n.Load(), 0)),
			Added:      c.pend.added.Load(),
			Retries:    c.pend.retries.Load(),
			Landed:     c.pend.landed.Load(),
			Superseded: c.pend.superseded.Load(),
			Expired:    c.pend.expired.Load(),
			Dropped:    c.pend.dropCount.Load(),
			Abandoned:  c.pend.abandoned.Load(),
		},
		Breaker: BreakerStats{State: c.breaker.State().String(), Opens: s.breakerOpens.Load()},
	}
	for op, o := range l2s.ByOp {
		st.L2.ByOp[op] = L2OpStats{Calls: u64(o.Calls), Errors: u64(o.Errors), Throttles: u64(o.Throttles)}
	}
	// A bypassed entry was found by L1 but not served: for the reader, a miss.
	byp := min(st.L1.Bypassed, st.L1.Hits)
	st.L1.Hits -= byp
	st.L1.Misses += byp
	enabled, cs := c.sourceStats()
	if enabled {
		st.Stream = StreamStats{
			Enabled:          true,
			Degraded:         c.l1.Now() >= c.trustedUntil.Load(),
			DegradedEpisodes: s.degradedEpisodes.Load(),
			Trusted:          cs.Trusted,
			StreamArn:        cs.StreamArn,
			Lag:              cs.Lag,
			Shards:           cs.Shards,
			ShardsCompleted:  u64(cs.ShardsCompleted),
			ShardsLost:       u64(cs.ShardsLost),
			Records:          u64(cs.Records),
			Changes:          u64(cs.Changes),
			Invalidations:    s.invalidations.Load(),
			Replacements:     s.replacements.Load(),
			Flushes:          u64(cs.Flushes),
			Errors:           u64(cs.Errors),
			Throttles:        u64(cs.Throttles),
			IteratorsRenewed: u64(cs.IteratorsRenewed),
			Quirks:           u64(cs.Quirks),
			LastError:        cs.LastError,
			ReaderLimitHits:  u64(cs.ReaderLimitHits),
			ReaderLimited:    cs.ReaderLimited,
		}
		s.lagMu.Lock()
		st.Stream.RecordLag, st.Stream.RecordLagMax = s.lagLast, s.lagMax
		if s.lagN > 0 {
			st.Stream.RecordLagMean = s.lagSum / time.Duration(s.lagN)
		}
		s.lagMu.Unlock()
	}
	return st
}

package tiered

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tieredcache/tieredcache/invalidation"
	"github.com/tieredcache/tieredcache/l1"
)

// Stats is a snapshot of what a Cache has done since New. Counters only grow.
type Stats struct {
	L1 l1.Stats // hits, misses, sets dropped or refused, bytes used, evictions

	L2Hits    uint64 // misses of L1 answered by L2
	L2Misses  uint64 // L2 reads that found nothing (or an expired item)
	L2Calls   uint64 // DynamoDB API calls on the data path (every BatchGetItem page and UnprocessedKeys retry; the SDK's own retries inside a call not; not table setup or the stream)
	L2Errors  uint64 // those that failed (timeouts, throttling, outage; not failed conditions)
	L2Corrupt uint64 // lookups (a key of a Get/GetOrLoad flight, of a GetMany, of a refresh, or a stream record) that met an L2 item they could not use: malformed, or undecodable (the Codec's Decode failed or panicked). Once per key per lookup; such a key is a miss

	Loads       uint64 // loader calls
	LoadErrors  uint64 // loader calls that failed (not cached)
	LoadPanics  uint64 // loader panics turned into errors
	Writes      uint64 // Set and Delete calls
	WriteErrors uint64 // Set and Delete calls that failed

	BatchLoads    uint64 // batch loader calls (GetMany); each also counts in Loads, and in LoadErrors if a key failed
	BatchLoadKeys uint64 // keys passed to batch loaders
	LoadsJoined   uint64 // keys GetMany took from a load in flight, or GetOrLoad from a GetMany's, instead of loading

	LeasesAcquired    uint64 // fill leases this node took
	LeaseWaits        uint64 // times this node waited on another node's lease
	LeaseTimeouts     uint64 // waits that ran out (the loader was then called anyway)
	StaleFillsDropped uint64 // loads not stored because the key changed meanwhile
	L2TooLarge        uint64 // loaded values too large for an item, kept in L1 only

	Refreshes       uint64 // refresh-ahead reloads started (at most one per entry)
	RefreshesFromL2 uint64 // refreshes answered by a newer L2 version (another node refreshed first)
	RefreshErrors   uint64 // refreshes whose loader or write failed (the current entry stays)
	StaleServed     uint64 // values served with a *StaleError after a loader error (StaleIfError)

	// Pending invalidations (see the README, "A failed write is not
	// forgotten"): Set/Delete failures with ErrL2Unavailable kept for retry.
	PendingInvalidations uint64 // pending now
	PendingAdded         uint64 // failures kept for retry
	PendingRetries       uint64 // retry attempts made
	PendingLanded        uint64 // retries whose version-conditioned tombstone landed
	PendingSuperseded    uint64 // pending invalidations made moot: the key was written since (by anyone), or holds nothing live
	PendingExpired       uint64 // given up after L2TTL (the old item has expired by then)
	PendingDropped       uint64 // failures not kept: the set was full (MaxPendingInvalidations); logged too
	PendingAbandoned     uint64 // still pending when Close's PendingDrainTimeout ran out

	BreakerState string // closed, half-open or open
	BreakerOpens uint64 // times the breaker opened

	Invalidations    uint64 // L1 entries dropped because the stream said the key changed
	Replacements     uint64 // L1 entries replaced in place (ReplaceOnChange)
	Flushes          uint64 // whole-L1 flushes (lost track of the stream)
	Degraded         bool   // trust in L1 does not hold now (read from the clock): only young L1 entries are served
	DegradedEpisodes uint64 // times trust was withdrawn (the stream consumer unhealthy, or a lapse seen on recovery)
	DegradedBypasses uint64 // L1 entries a reader's lookup found but did not serve (older than T/2 while trust had lapsed); counted in L1.Misses, not L1.Hits
	Refetches        uint64 // flights that read again because what they had read was current more than T/2 before they ended (DynamoDB slow, or the process frozen)
	// Record age at invalidation: now minus the record's
	// ApproximateCreationDateTime. Coarse: AWS rounds that time down to the
	// second and DynamoDB Local to the minute, so these overstate the lag (by
	// up to a minute on DynamoDB Local). Stream.Lag is the precise health
	// figure; bench's BenchmarkInvalidationLag measures write ack -> eviction.
	LagLast time.Duration       // last record
	LagMax  time.Duration       // largest seen
	LagMean time.Duration       // mean over all records seen
	Stream  *invalidation.Stats // nil when invalidation is disabled
}

type counters struct {
	l2Hits, l2Misses, l2Corrupt                                  atomic.Uint64
	loads, loadErrors, loadPanics, writes, writeErrors           atomic.Uint64
	leasesAcquired, leaseWaits, leaseTimeouts, staleFillsDropped atomic.Uint64
	l2TooLarge, breakerOpens                                     atomic.Uint64
	refreshes, refreshesFromL2, refreshErrors, staleServed       atomic.Uint64
	degradedBypasses, refetches                                  atomic.Uint64
	batchLoads, batchLoadKeys, loadsJoined                       atomic.Uint64
	invalidations, replacements, flushes, degradedEpisodes       atomic.Uint64

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

// Stats returns a snapshot. It is cheap enough to call every second.
func (c *Cache[V]) Stats() Stats {
	s := &c.stats
	ls := c.l2.Stats()
	st := Stats{
		L1:                c.l1.Stats(),
		L2Hits:            s.l2Hits.Load(),
		L2Misses:          s.l2Misses.Load(),
		L2Calls:           uint64(max(ls.Calls, 0)),
		L2Errors:          uint64(max(ls.Errors, 0)),
		L2Corrupt:         s.l2Corrupt.Load(),
		Loads:             s.loads.Load(),
		LoadErrors:        s.loadErrors.Load(),
		LoadPanics:        s.loadPanics.Load(),
		Writes:            s.writes.Load(),
		WriteErrors:       s.writeErrors.Load(),
		LeasesAcquired:    s.leasesAcquired.Load(),
		LeaseWaits:        s.leaseWaits.Load(),
		LeaseTimeouts:     s.leaseTimeouts.Load(),
		StaleFillsDropped: s.staleFillsDropped.Load(),
		L2TooLarge:        s.l2TooLarge.Load(),
		Refreshes:         s.refreshes.Load(),
		RefreshesFromL2:   s.refreshesFromL2.Load(),
		RefreshErrors:     s.refreshErrors.Load(),
		StaleServed:       s.staleServed.Load(),
		BatchLoads:        s.batchLoads.Load(),
		BatchLoadKeys:     s.batchLoadKeys.Load(),
		LoadsJoined:       s.loadsJoined.Load(),
		BreakerState:      c.breaker.State().String(),

		PendingInvalidations: uint64(max(c.pend.n.Load(), 0)),
		PendingAdded:         c.pend.added.Load(),
		PendingRetries:       c.pend.retries.Load(),
		PendingLanded:        c.pend.landed.Load(),
		PendingSuperseded:    c.pend.superseded.Load(),
		PendingExpired:       c.pend.expired.Load(),
		PendingDropped:       c.pend.dropCount.Load(),
		PendingAbandoned:     c.pend.abandoned.Load(),
		BreakerOpens:         s.breakerOpens.Load(),
		Invalidations:        s.invalidations.Load(),
		Replacements:         s.replacements.Load(),
		Flushes:              s.flushes.Load(),
		Degraded:             c.l1.Now() >= c.trustedUntil.Load(),
		DegradedEpisodes:     s.degradedEpisodes.Load(),
		DegradedBypasses:     s.degradedBypasses.Load(),
		Refetches:            s.refetches.Load(),
	}
	s.lagMu.Lock()
	st.LagLast, st.LagMax = s.lagLast, s.lagMax
	if s.lagN > 0 {
		st.LagMean = s.lagSum / time.Duration(s.lagN)
	}
	s.lagMu.Unlock()
	// A bypassed entry was found by L1 but not served: for the reader, a miss.
	byp := min(st.DegradedBypasses, st.L1.Hits)
	st.L1.Hits -= byp
	st.L1.Misses += byp
	if c.consumer != nil {
		cs := c.consumer.Stats()
		st.Stream = &cs
	}
	return st
}

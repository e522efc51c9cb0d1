package tiered

import (
	"math/rand/v2"
	"time"
)

// ttlPolicy is the one owner of lifetimes: which TTL each tier gives a value,
// the jitter of L1 expiries, and the refresh-ahead point. Options are
// defaulted and checked once (Options.setDefaults); l1 is built with jitter
// off and always handed the exact TTL decided here, so that an entry's
// expiry and its refresh point come from one draw.
type ttlPolicy struct {
	l1, l1Max, l2, negative time.Duration
	jitter                  float64 // in [0, 1)
	refreshAhead            float64 // 0: off
}

func newTTLPolicy[V any](o *Options[V]) ttlPolicy {
	return ttlPolicy{l1: o.L1TTL, l1Max: o.L1MaxTTL, l2: o.L2TTL, negative: o.NegativeTTL,
		jitter: o.TTLJitter, refreshAhead: o.RefreshAhead}
}

// forValue turns the TTL a loader or SetWithTTL chose (0: none) into the
// entry's L2 lifetime and the L1 lifetime to ask l1For for (0: L1TTL). A
// choice applies to both tiers; otherwise L2 keeps the entry L2TTL and L1 for
// L1TTL. A negative entry lives NegativeTTL in both.
func (p ttlPolicy) forValue(chosen time.Duration, notFound bool) (l2TTL, l1Want time.Duration) {
	switch {
	case notFound:
		return p.negative, p.negative
	case chosen > 0:
		return chosen, chosen
	}
	return p.l2, 0
}

// l1For is the exact L1 lifetime of an entry whose preferred TTL is want (0:
// L1TTL) and whose L2 item expires at exp (zero: unknown): capped at
// L1MaxTTL, never past the L2 item, then shortened by a uniform random
// fraction in [0, TTLJitter) so that entries stored together do not expire
// together. It is <= 0 when exp has passed: such an entry must not be
// stored.
func (p ttlPolicy) l1For(want time.Duration, exp time.Time) time.Duration {
	if want <= 0 {
		want = p.l1
	}
	want = min(want, p.l1Max)
	if !exp.IsZero() {
		want = min(want, time.Until(exp))
	}
	if want <= 0 {
		return want
	}
	if p.jitter > 0 {
		want -= time.Duration(rand.Float64() * p.jitter * float64(want))
	}
	return max(want, 1)
}

// refreshAt is when a hit starts refresh-ahead for an entry stored at
// stored (l1's clock) that lives ttl (from l1For) in L1: RefreshAhead of that
// very ttl after stored, so the refresh point comes before the expiry, jitter
// included. 0: never (refresh-ahead off).
func (p ttlPolicy) refreshAt(stored int64, ttl time.Duration) int64 {
	if p.refreshAhead <= 0 || ttl <= 0 {
		return 0
	}
	return stored + int64(float64(ttl)*p.refreshAhead)
}

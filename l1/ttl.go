package l1

import (
	"math/rand/v2"
	"time"
)

// entryTTL is the TTL an entry stored with ttl actually gets: ttl <= 0 means
// the default TTL, anything above MaxTTL is cut to MaxTTL, then jitter takes
// off a uniform random fraction in [0, Jitter) so that entries stored
// together do not expire (and reload) together. Jitter only ever shortens a
// TTL: the result is in (ttl*(1-Jitter), ttl] and never exceeds MaxTTL.
func (o *resolved) entryTTL(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		ttl = o.ttl
	}
	ttl = min(ttl, o.maxTTL)
	if o.jitter > 0 {
		ttl -= time.Duration(rand.Float64() * o.jitter * float64(ttl))
	}
	// Ristretto treats 0 as "never expires": never hand it one.
	return max(ttl, 1)
}

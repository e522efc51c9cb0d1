package l1

import (
	"fmt"
	"time"
)

// Defaults applied by New to zero fields of Options.
const (
	// DefaultMaxBytes is the default byte budget: 64 MiB.
	DefaultMaxBytes int64 = 64 << 20
	// DefaultTTL is the TTL of an entry stored without one of its own.
	DefaultTTL = 1 * time.Minute
	// DefaultMaxTTL is the hard cap on any entry's TTL: whatever a caller
	// asks for, no entry is served longer than this after it was stored.
	DefaultMaxTTL = 5 * time.Minute
	// DefaultJitter is the default TTL jitter fraction: actual TTLs are
	// uniform in [0.9*ttl, ttl], so entries filled together do not all
	// expire together.
	DefaultJitter = 0.1
	// DefaultItemOverhead is the fixed cost charged per item on top of
	// len(key)+size: what Ristretto and Go spend per item beyond key and
	// value bytes. Measured here (TestItemOverhead, 1e5 items, live heap
	// after GC): ~135 B per item for Ristretto's store map entry, policy
	// key->cost entry and expiration bucket entry. 256 also covers what that
	// measurement leaves out: the key's string header and allocation
	// rounding, the caller's own wrapper around a value (tiered's entry
	// struct) and the map growth slack (Go maps run 50-87% full).
	DefaultItemOverhead int64 = 256
	// DefaultBufferItems is Ristretto's recommended Get buffer size.
	DefaultBufferItems int64 = 64
	// AssumedItemSize is the average item size (cost, bytes) New assumes when
	// it derives NumCounters from MaxBytes: NumCounters = 10 * MaxBytes /
	// AssumedItemSize (Ristretto wants ~10 counters per resident item).
	AssumedItemSize int64 = 1024
	// NoJitter, as Options.Jitter, disables TTL jitter (0 means
	// DefaultJitter). Any negative value does the same.
	NoJitter = -1.0
)

// Options configures a Cache. The zero value is valid: every zero field takes
// its Default* value.
type Options struct {
	// MaxBytes is the byte budget: the sum over resident entries of
	// len(key) + size + ItemOverhead never exceeds it (Ristretto evicts to
	// make room, or refuses the new entry). 0 means DefaultMaxBytes.
	MaxBytes int64
	// TTL is the TTL of entries stored with ttl <= 0. 0 means DefaultTTL,
	// or MaxTTL if that is smaller. Must not exceed MaxTTL.
	TTL time.Duration
	// MaxTTL caps every entry's TTL, whatever the caller passes: the last
	// net against an entry that is never invalidated. 0 means DefaultMaxTTL.
	MaxTTL time.Duration
	// Jitter is the TTL jitter fraction in [0, 1): an entry stored with ttl
	// (after the MaxTTL cap) lives a uniformly random duration in
	// [ttl*(1-Jitter), ttl], never longer than ttl. 0 means DefaultJitter;
	// negative (NoJitter) disables jitter.
	Jitter float64
	// ItemOverhead is the fixed cost in bytes charged per entry on top of
	// len(key) + size. 0 means DefaultItemOverhead.
	ItemOverhead int64
	// NumCounters is the number of TinyLFU counters Ristretto keeps (about
	// 10x the expected number of resident entries). 0 means 10 * MaxBytes /
	// AssumedItemSize (at least 10).
	NumCounters int64
	// BufferItems is the size of Ristretto's per-P Get buffers. 0 means
	// DefaultBufferItems.
	BufferItems int64
	// Clock returns the time in nanoseconds on a monotonic scale; entries
	// expire by it. Nil means the process's monotonic clock (internal/mono),
	// read directly, with no call through this field: set it only in tests.
	Clock func() int64
}

// resolved is Options with defaults applied and checked.
type resolved struct {
	maxBytes     int64
	ttl          time.Duration
	maxTTL       time.Duration
	jitter       float64 // 0: none
	itemOverhead int64
	numCounters  int64
	bufferItems  int64
}

// CheckOptions reports what New would refuse in o (an *OptionsError), without
// building a Cache.
func CheckOptions(o Options) error {
	_, err := o.resolve()
	return err
}

func (o Options) resolve() (resolved, error) {
	r := resolved{
		maxBytes:     o.MaxBytes,
		ttl:          o.TTL,
		maxTTL:       o.MaxTTL,
		jitter:       o.Jitter,
		itemOverhead: o.ItemOverhead,
		numCounters:  o.NumCounters,
		bufferItems:  o.BufferItems,
	}
	bad := func(field, format string, args ...any) (resolved, error) {
		return resolved{}, &OptionsError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case r.maxBytes < 0:
		return bad("MaxBytes", "must be >= 0, got %d", r.maxBytes)
	case r.maxBytes == 0:
		r.maxBytes = DefaultMaxBytes
	}
	switch {
	case r.maxTTL < 0:
		return bad("MaxTTL", "must be >= 0, got %v", r.maxTTL)
	case r.maxTTL == 0:
		r.maxTTL = DefaultMaxTTL
	}
	switch {
	case r.ttl < 0:
		return bad("TTL", "must be >= 0, got %v", r.ttl)
	case r.ttl == 0:
		r.ttl = min(DefaultTTL, r.maxTTL)
	case r.ttl > r.maxTTL:
		return bad("TTL", "(%v) must not exceed MaxTTL (%v)", r.ttl, r.maxTTL)
	}
	switch {
	case r.jitter != r.jitter: // NaN
		return bad("Jitter", "must be a number")
	case r.jitter < 0:
		r.jitter = 0
	case r.jitter == 0:
		r.jitter = DefaultJitter
	case r.jitter >= 1:
		return bad("Jitter", "must be < 1, got %v", r.jitter)
	}
	switch {
	case r.itemOverhead < 0:
		return bad("ItemOverhead", "must be >= 0, got %d", r.itemOverhead)
	case r.itemOverhead == 0:
		r.itemOverhead = DefaultItemOverhead
	}
	switch {
	case r.numCounters < 0:
		return bad("NumCounters", "must be >= 0, got %d", r.numCounters)
	case r.numCounters == 0:
		r.numCounters = 10 * max(r.maxBytes/AssumedItemSize, 1)
	}
	switch {
	case r.bufferItems < 0:
		return bad("BufferItems", "must be >= 0, got %d", r.bufferItems)
	case r.bufferItems == 0:
		r.bufferItems = DefaultBufferItems
	}
	return r, nil
}

// Package l1 is tieredcache's in-process layer: a Ristretto v2 cache of
// values by string key with a byte budget, TTLs with jitter and a hard
// maximum, a fill fence, and a Close that is safe at any time.
//
// # Guarantees
//
//   - Budget: every entry costs len(key) + size + Options.ItemOverhead; the
//     sum over resident entries never exceeds Options.MaxBytes (Ristretto's
//     cost accounting, IgnoreInternalCost). An entry larger than the whole
//     budget is refused.
//   - Lifetime: an entry stored with ttl (ttl <= 0: Options.TTL) is never
//     returned more than min(ttl, Options.MaxTTL) after the write that stored
//     it (by Options.Clock, monotonic by default; GetAt and PeekAt take the
//     caller's reading of it); jitter only shortens it, uniformly down to
//     (1-Jitter) of it. An expired entry found by a Get is removed at once,
//     giving its bytes back; until then it counts against the budget like
//     any other, so expired entries never hold memory beyond MaxBytes.
//   - Visibility: a write method returns true only once Get sees its value,
//     and false leaves no value of its own behind. (Ristretto alone applies
//     new keys asynchronously; see fence.go.)
//   - Fence: a Fill whose BeginFill came before a SetFenced, Replace or
//     Invalidate of the same key, or a Flush, never stores: not even for a
//     moment, not even when it is racing them.
//   - Close: safe twice and concurrently with every method; afterwards Get
//     misses and writes return false. Ristretto's goroutines are stopped
//     when Close returns.
//   - Hit path: Get allocates nothing of its own, takes no lock beyond
//     Ristretto's, writes only striped counters (readers.go), and reads the
//     clock once (none with GetAt): expiry is checked by l1, not by Ristretto,
//     whose TTLs cost a wall-clock read per Get.
//   - Accounting: drops (Ristretto's set buffer full), admission refusals,
//     fenced fills, evictions and expirations are counted in Stats.
//
// # Not guaranteed
//
//   - Ristretto may evict or refuse any entry: a cache, not a store.
//   - The fence is per stripe of keys, not per key: a write to another key
//     of the same stripe (1 in 4096) also fails a fill in flight. This only
//     costs a refill.
//   - Values are shared, not copied: callers must not modify them.
package l1

package tiered

import (
	"bytes"
	"context"
	"errors"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tieredcache/tieredcache/l2"
)

// A failed invalidation is not forgotten.
//
// When Set or Delete fails with ErrL2Unavailable, L2 may still hold the value
// the write meant to replace, and every node would serve it until the next
// write or L2TTL. So the failing node keeps a pending invalidation of the key
// and retries it in the background (one goroutine, started by New, stopped
// by Close) with exponential backoff and full jitter, until it lands or
// L2TTL has passed since the failure (by then the old item has expired, if
// it was written with L2TTL).
//
// The retry never overwrites a write made after the failure. It reads the
// item first, then:
//   - vacant (absent, tombstone, expired, lease only) or corrupt: nothing
//     live to supersede: done (superseded);
//   - the failed Set's own value: that write landed after all (it timed out
//     but reached DynamoDB): done (superseded);
//   - a version newer than the one this node held when the write failed
//     (known): another node wrote since: done (superseded);
//   - otherwise (a version <= known, or known unknown): a tombstone
//     conditioned on exactly that version (l2.Table.DeleteIfVersion). If
//     the version moved between the read and the tombstone, someone wrote
//     meanwhile: done (superseded).
//
// "The version the failed write meant to replace" is the version the table
// held when the write was attempted. This node cannot read it then (L2 is
// unreachable), so it uses the version of the entry its L1 held (known). When
// L1 held none, the retry takes the version it reads first as the one to
// replace: a write by another node during the outage that this node never
// saw may then be tombstoned. That never serves older data (readers reload
// from the source); it costs one load.
//
// While a key is pending, this node neither reads it from L2 (misses go to
// the loader: Get answers ErrNotFound) nor writes a load of it to L2 (the
// load is kept in L1 only): a fill there would hide the stale item behind a
// value no newer than the source, and a read would bring the stale item
// back. A later successful Set or Delete of the key by this node ends the
// pending state.
//
// The set is bounded (MaxPendingInvalidations). A key that does not fit is
// dropped, counted (Stats.Pending.Dropped) and logged; this node then does not
// serve it from L2 either, until L2TTL has passed since the last drop: the
// dropped keys are remembered in a fixed-size hashed bitmap (8 KiB), so a few
// other keys (hash collisions) also bypass L2 meanwhile, which costs loads,
// never correctness. Close retries what is pending for up to
// PendingDrainTimeout, then gives up (Stats.Pending.Abandoned, logged).

const (
	pendingBackoffBase = 50 * time.Millisecond
	pendingBackoffMax  = 5 * time.Second
	droppedBits        = 1 << 16
)

// errPendingKey stands for an L2 read skipped because the key has a pending
// invalidation on this node: treated as "L2 could not be read".
var errPendingKey = errors.New("tiered: key has a pending invalidation on this node")

type pendingInv struct {
	key     string
	known   int64     // the version this node's L1 held when the write failed (0: none)
	value   []byte    // the failed Set's encoded value; nil for a Delete
	since   time.Time // the first failure
	tries   int
	next    time.Time // next retry
	running bool      // a retry is in flight (its result decides)
}

type pendingSet struct {
	seed maphash.Seed
	n    atomic.Int64 // len(m), for the lock-free "nothing pending" check
	anyD atomic.Bool  // dropped keys are remembered

	mu       sync.Mutex
	m        map[string]*pendingInv
	max      int
	dropped  []uint64 // bitmap of dropped keys' hashes
	dropTill time.Time
	wake     chan struct{} // cap 1: something was added

	stop chan struct{} // closed by Close: drain and return
	done chan struct{} // closed when the worker returned

	added, retries, landed, superseded, expired, dropCount, abandoned atomic.Uint64
}

func (p *pendingSet) init(max int) {
	p.seed = maphash.MakeSeed()
	p.m = make(map[string]*pendingInv)
	p.max = max
	p.wake = make(chan struct{}, 1)
	p.stop = make(chan struct{})
	p.done = make(chan struct{})
}

func (p *pendingSet) bit(key string) (int, uint64) {
	h := maphash.String(p.seed, key) % droppedBits
	return int(h / 64), 1 << (h % 64)
}

// blocks reports whether this node must not serve key from L2 (nor write a
// load of it there): an invalidation of it is pending or was dropped.
// Misses only: two atomic loads when nothing is pending.
func (p *pendingSet) blocks(key string) bool {
	if p.n.Load() == 0 && !p.anyD.Load() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.m[key]; ok {
		return true
	}
	if p.dropped == nil {
		return false
	}
	if time.Now().After(p.dropTill) {
		p.dropped = nil
		p.anyD.Store(false)
		return false
	}
	w, b := p.bit(key)
	return p.dropped[w]&b != 0
}

// add records a failed invalidation of key. It reports false when the set
// was full and key was dropped instead.
func (p *pendingSet) add(key string, known int64, value []byte, l2TTL time.Duration) bool {
	now := time.Now()
	p.mu.Lock()
	if inv, ok := p.m[key]; ok {
		// Already pending: the stale item is the same one (still there, or
		// already replaced by the retry's tombstone). Keep the older known
		// version and the first failure's time; the latest value is the one
		// whose landing would make the retry moot.
		inv.value = value
		p.mu.Unlock()
		return true
	}
	if len(p.m) >= p.max {
		if p.dropped == nil {
			p.dropped = make([]uint64, droppedBits/64)
		}
		w, b := p.bit(key)
		p.dropped[w] |= b
		p.dropTill = now.Add(l2TTL)
		p.anyD.Store(true)
		p.mu.Unlock()
		p.dropCount.Add(1)
		return false
	}
	p.m[key] = &pendingInv{key: key, known: known, value: value, since: now, next: now}
	p.n.Store(int64(len(p.m)))
	p.mu.Unlock()
	p.added.Add(1)
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return true
}

// resolve ends key's pending state: this node's own write of key landed.
func (p *pendingSet) resolve(key string) {
	if p.n.Load() == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	inv, ok := p.m[key]
	switch {
	case !ok:
	case inv.running:
		inv.since = time.Time{} // finish drops it; the retry counts its own outcome
	default:
		delete(p.m, key)
		p.n.Store(int64(len(p.m)))
		p.superseded.Add(1)
	}
}

// due marks and returns the invalidations whose retry is due (all of them
// with all set), and how long until the next one is.
func (p *pendingSet) due(now time.Time, all bool) ([]pendingInv, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []pendingInv
	wait := time.Duration(-1)
	for _, inv := range p.m {
		if inv.running {
			continue
		}
		if all || !now.Before(inv.next) {
			inv.running = true
			out = append(out, *inv)
			continue
		}
		if d := inv.next.Sub(now); wait < 0 || d < wait {
			wait = d
		}
	}
	return out, wait
}

// finish records a retry's outcome: done removes the invalidation; otherwise
// it is retried after a backoff with full jitter (a random wait in [0,
// min(max, base*2^tries))), so nodes that failed together do not retry
// together (AWS Architecture Blog, "Exponential Backoff And Jitter").
func (p *pendingSet) finish(key string, done bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	inv, ok := p.m[key]
	if !ok {
		return
	}
	inv.running = false
	if done || inv.since.IsZero() { // resolved meanwhile by a write of ours
		delete(p.m, key)
		p.n.Store(int64(len(p.m)))
		return
	}
	inv.tries++
	ceil := min(pendingBackoffMax, pendingBackoffBase<<min(inv.tries, 20))
	inv.next = time.Now().Add(time.Duration(rand.Int64N(int64(ceil)) + 1))
}

// knownVersion is the version of key this node's L1 holds (0: none), taken
// before a write: the version a failed write meant to replace, as far as
// this node knows.
func (c *Cache[V]) knownVersion(key string) int64 {
	if e, ok := c.l1.Peek(key); ok {
		return e.version
	}
	return 0
}

// afterWrite is the pending-invalidation hook of Set and Delete: a write of
// key that failed with ErrL2Unavailable leaves a pending invalidation
// (value: the Set's encoded value, nil for a Delete); a missing table is
// reported as *TableMissingError instead (nothing to invalidate there); a
// write that landed ends key's pending state.
func (c *Cache[V]) afterWrite(op, key string, known int64, value []byte, err error) error {
	switch {
	case err == nil:
		c.pend.resolve(key)
		return nil
	case isTableMissing(err):
		var le *L2Error
		if errors.As(err, &le) {
			err = le.Err // not an outage: drop the ErrL2Unavailable label
		}
		return &TableMissingError{Table: c.o.Table, Op: op, Err: err}
	case errors.Is(err, ErrL2Unavailable):
		if !c.pend.add(key, known, value, c.o.L2TTL) {
			if n := c.pend.dropCount.Load(); n&(n-1) == 0 { // 1, 2, 4, ...: say so without flooding
				c.o.Logger.Warn("tieredcache: pending invalidations full; keys dropped are not served from L2 by this node until L2TTL passes",
					"max", c.o.MaxPendingInvalidations, "dropped", n)
			}
		}
	}
	return err
}

// runPending is the retry goroutine: it retries due invalidations one at a
// time until Close, then drains.
func (c *Cache[V]) runPending() {
	defer close(c.pend.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	// Retries here end as soon as Close begins (it then drains, with its own
	// deadline): a hung DynamoDB must not hold Close for a whole batch.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.pend.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		due, wait := c.pend.due(time.Now(), false)
		for i, inv := range due {
			if ctx.Err() != nil { // Close began: leave the rest to the drain
				for _, rest := range due[i:] {
					c.pend.finish(rest.key, false)
				}
				break
			}
			c.pend.finish(inv.key, c.retryPending(ctx, &inv))
		}
		if len(due) > 0 {
			wait = 0 // their next retries are not in wait: look again (after checking stop)
		}
		if wait < 0 {
			wait = time.Hour
		}
		t.Reset(wait)
		select {
		case <-c.pend.stop:
			c.drainPending()
			return
		case <-c.pend.wake:
		case <-t.C:
		}
	}
}

// drainPending retries every pending invalidation until none is left or
// PendingDrainTimeout has passed.
func (c *Cache[V]) drainPending() {
	ctx, cancel := context.WithTimeout(context.Background(), c.o.PendingDrainTimeout)
	defer cancel()
	for ctx.Err() == nil {
		due, wait := c.pend.due(time.Now(), true)
		if len(due) == 0 && wait < 0 {
			return
		}
		for _, inv := range due {
			c.pend.finish(inv.key, c.retryPending(ctx, &inv))
		}
		if !sleep(ctx, 20*time.Millisecond) {
			break
		}
	}
	c.pend.mu.Lock()
	left := len(c.pend.m)
	c.pend.mu.Unlock()
	if left > 0 {
		c.pend.abandoned.Add(uint64(left))
		c.o.Logger.Warn("tieredcache: Close gave up on pending invalidations; other nodes may serve those keys' old values until L2TTL",
			"left", left)
	}
}

// retryPending makes one attempt at inv; it reports whether inv is done
// (landed, superseded or expired). See the comment at the top of this file.
func (c *Cache[V]) retryPending(ctx context.Context, inv *pendingInv) bool {
	if time.Since(inv.since) >= c.o.L2TTL {
		c.pend.expired.Add(1)
		return true
	}
	// Retries skip the breaker's accounting, so that the breaker stays a
	// function of callers' traffic (a background read succeeding would
	// otherwise reset its count of write failures), but respect it: no
	// attempt while it is open.
	if c.breaker.State() == gobreaker.StateOpen {
		return false
	}
	c.pend.retries.Add(1)
	item, err := c.l2.Get(ctx, inv.key)
	switch {
	case errors.Is(err, l2.ErrNotFound), errors.Is(err, l2.ErrCorruptItem), isTableMissing(err):
		c.pend.superseded.Add(1) // nothing live to supersede
		return true
	case err != nil:
		return false
	case inv.value != nil && !item.NotFound && bytes.Equal(item.Value, inv.value),
		inv.known > 0 && item.Version > inv.known:
		c.pend.superseded.Add(1)
		return true
	}
	err = c.l2.DeleteIfVersion(ctx, inv.key, item.Version)
	switch {
	case err == nil:
		c.pend.landed.Add(1)
		return true
	case errors.Is(err, l2.ErrConflict), isTableMissing(err):
		c.pend.superseded.Add(1) // written since the read: newer than the failure
		return true
	}
	return false
}

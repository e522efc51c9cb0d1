package tiered

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/tieredcache/tieredcache/l2"
)

// acquireOrWait is the fill's lease step, after memcache's leases. It takes
// the fill lease on j's key, bound to the version the read found (then j's
// write is guarded by both), or adopts the entry another node filled while
// we waited (j is finished), or leaves j to load without a lease: DynamoDB
// failed (then j.down is set), or the holder did not fill within LeaseWait.
// A live lease of an older release on the key's item (j.leased) is waited
// on first, as that release does. A corrupt item met here is counted only
// if the lookup has not counted one yet.
func (f *fill[V]) acquireOrWait(j *job[V]) {
	c := f.c
	token := c.owner + "/" + strconv.FormatUint(c.leaseSeq.Add(1), 36)
	deadline := time.Now().Add(c.o.LeaseWait)
	backoff := 2 * time.Millisecond
	if j.leased {
		c.stats.leaseWaits.Add(1)
		if !f.awaitHolder(j, deadline, &backoff) {
			return
		}
	}
	for time.Now().Before(deadline) {
		res, err := l2Call(c, func() (l2.LeaseResult, error) {
			return c.l2.AcquireLeaseAt(f.ctx, j.key, j.seen, token, c.o.LeaseTTL)
		})
		switch {
		case err != nil:
			j.down = l2Down(err)
			return
		case res.Acquired:
			c.stats.leasesAcquired.Add(1)
			j.guard, j.lease = guardLease, token
			return
		}
		// Another node holds a live lease: wait for its fill by reading L2.
		c.stats.leaseWaits.Add(1)
		until := res.HolderExpires
		if until.IsZero() || until.After(deadline) { // zero: the lease item changed under the call
			until = deadline
		}
		if !f.awaitHolder(j, until, &backoff) {
			return
		}
		// The holder released its lease, let it expire, or it was voided
		// (the key moved on) without a fill: try to take it over.
	}
	c.stats.leaseTimeouts.Add(1)
}

// awaitHolder reads L2 and the key's lease (with backoff) until until, for
// the fill of the lease's holder. It reports whether to try taking the lease
// again: false once j is answered (adopted), L2 fails, the item is corrupt or
// ctx ended. The version the last read found becomes j's guard: the load, if
// this node makes it, begins after that read.
func (f *fill[V]) awaitHolder(j *job[V], until time.Time, backoff *time.Duration) bool {
	c := f.c
	for time.Now().Before(until) {
		if !sleep(f.ctx, *backoff) {
			return false
		}
		*backoff = min(*backoff*2, 50*time.Millisecond)
		item, err := l2Call(c, func() (l2.Item, error) { return c.l2.GetLeased(f.ctx, j.key) })
		switch {
		case err == nil:
			f.adopt(j, item)
			return false
		case errors.Is(err, l2.ErrCorruptItem):
			j.corrupt.count(&c.stats)
			return false
		case !errors.Is(err, l2.ErrNotFound):
			j.down = l2Down(err)
			return false
		}
		j.seen = item.Version
		if !item.Leased {
			return true // released (its load failed), voided or expired: try to take it
		}
	}
	return true
}

// releaseLease gives up a lease whose load did not land, so other nodes need
// not wait for it to expire. Best effort: the lease expires anyway.
func (c *Cache[V]) releaseLease(key, lease string) {
	ctx, cancel := context.WithTimeout(c.closeCtx, time.Second)
	defer cancel()
	_, _ = l2Call(c, func() (struct{}, error) { return struct{}{}, c.l2.ReleaseLease(ctx, key, lease) })
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

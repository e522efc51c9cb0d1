package tiered

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/tieredcache/tieredcache/l1"
	"github.com/tieredcache/tieredcache/l2"
)

// acquireOrWait takes the fill lease on key, after memcache's leases. It
// returns the lease token when this flight may call the loader, or an entry
// when another node filled the key while we waited. It returns ("", nil) when
// the loader should run without a lease: DynamoDB failed (then down is set),
// or the holder did not fill within LeaseWait.
//
// corrupt is the lookup's count of corrupt items: an undecodable item met
// here is counted only if the lookup has not counted one yet.
func (c *Cache[V]) acquireOrWait(ctx context.Context, key string, fence l1.Fence, corrupt *corruptOnce) (lease string, filled *entry[V], down bool) {
	token := c.owner + "/" + strconv.FormatUint(c.leaseSeq.Add(1), 36)
	deadline := time.Now().Add(c.o.LeaseWait)
	backoff := 2 * time.Millisecond
	for {
		res, err := l2Call(c, func() (l2.LeaseResult, error) {
			return c.l2.AcquireLease(ctx, key, token, c.o.LeaseTTL)
		})
		if err != nil {
			return "", nil, l2Down(err)
		}
		if res.Acquired {
			c.stats.leasesAcquired.Add(1)
			return token, nil, false
		}
		if res.Current != nil { // someone filled or wrote it meanwhile
			if e, ok := c.fromItem(*res.Current); ok {
				c.stats.l2Hits.Add(1)
				c.fillL1(key, fence, e, int64(len(res.Current.Value)), 0, res.Current.ExpiresAt)
				return "", e, false
			}
			corrupt.count(&c.stats)
			return "", nil, false
		}
		// Another node holds a live lease: wait for its fill by reading L2.
		c.stats.leaseWaits.Add(1)
		until := res.HolderExpires
		if until.After(deadline) {
			until = deadline
		}
		for time.Now().Before(until) {
			if !sleep(ctx, backoff) {
				return "", nil, false
			}
			backoff = min(backoff*2, 50*time.Millisecond)
			item, err := l2Call(c, func() (l2.Item, error) { return c.l2.Get(ctx, key) })
			if err == nil {
				if e, ok := c.fromItem(item); ok {
					c.stats.l2Hits.Add(1)
					c.fillL1(key, fence, e, int64(len(item.Value)), 0, item.ExpiresAt)
					return "", e, false
				}
				corrupt.count(&c.stats)
				return "", nil, false
			}
			if errors.Is(err, l2.ErrCorruptItem) {
				corrupt.count(&c.stats)
			}
			if !errors.Is(err, l2.ErrNotFound) {
				return "", nil, l2Down(err)
			}
			if !item.Leased {
				break // released (its load failed) or expired: try to take it
			}
		}
		if !time.Now().Before(deadline) {
			c.stats.leaseTimeouts.Add(1)
			return "", nil, false
		}
		// The holder released its lease or let it expire without a fill:
		// try to take it over.
	}
}

// releaseLease gives up a lease whose load failed, so other nodes need not
// wait for it to expire. Best effort: the lease expires anyway.
func (c *Cache[V]) releaseLease(key, lease string) {
	if lease == "" {
		return
	}
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

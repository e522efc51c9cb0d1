package tiered

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tieredcache/tieredcache/l2"
)

// Set writes value to L2, then to this node's L1, so that this node reads its
// own write at once; the table's stream tells the other nodes. A Set that
// could not reach DynamoDB returns an error matching ErrL2Unavailable and
// leaves this node's L1 without the key: the write is reported, never lost
// silently. A value too large for an item is refused with l2.ErrValueTooLarge
// before the breaker is consulted (also while it is open); a request DynamoDB
// rejects as invalid returns an error matching l2.ErrInvalidRequest, not
// ErrL2Unavailable. A fill of key that began before Set never lands after it.
func (c *Cache[V]) Set(ctx context.Context, key string, value V) error {
	return c.SetWithTTL(ctx, key, value, 0)
}

// SetWithTTL is Set with this entry's TTL (0: L2TTL in L2, L1TTL in L1, both
// capped as usual). A negative ttl is refused with ErrInvalidTTL.
func (c *Cache[V]) SetWithTTL(ctx context.Context, key string, value V, ttl time.Duration) (err error) {
	if !c.track() {
		return ErrClosed
	}
	defer c.wg.Done()
	if err := c.l2.CheckKey(key); err != nil {
		return err
	}
	if ttl < 0 {
		return fmt.Errorf("%w: SetWithTTL ttl %v is negative", ErrInvalidTTL, ttl)
	}
	enc, err := c.encode(value)
	if err != nil {
		return err
	}
	l2TTL, l1Want := c.ttl.forValue(ttl, false)
	known := c.knownVersion(key)
	defer func() { err = c.afterWrite("Set", key, known, enc, err) }() // pending.go
	fence := c.beginFill(key)
	c.stats.writes.Add(1)
	ver, err := l2Store(c, key, enc, func() (int64, error) { return c.l2.Put(ctx, key, enc, l2TTL) })
	if err != nil {
		c.l1.Invalidate(key)
		c.stats.writeErrors.Add(1)
		if isBadInput(err) || errors.Is(err, l2.ErrInvalidRequest) || errors.Is(err, l2.ErrConflict) {
			// DynamoDB refused the request, or it was never sent, or other
			// writers kept rewriting a corrupt item under it: not an outage.
			return err
		}
		return &L2Error{Op: "Set", Err: err}
	}
	e := &entry[V]{value: value, version: ver, sum: valueSum(enc)}
	l1ttl := c.ttl.l1For(l1Want, time.Now().Add(l2TTL))
	c.stamp(e, fence.Taken(), l1ttl)
	// If another write of key reached us (through the stream) while ours was
	// in flight, we cannot tell which is newer: drop the key instead.
	c.indexKey(key)
	c.l1.SetFenced(key, fence, e, int64(len(enc)), l1ttl)
	return nil
}

// Delete removes key from L2 (leaving a tombstone so versions keep moving
// forward, and voiding any fill lease) and from this node's L1. Errors are
// as for Set; L1 loses the key in every case.
func (c *Cache[V]) Delete(ctx context.Context, key string) (err error) {
	if !c.track() {
		return ErrClosed
	}
	defer c.wg.Done()
	if err := c.l2.CheckKey(key); err != nil {
		return err
	}
	c.stats.writes.Add(1)
	known := c.knownVersion(key)
	defer func() { err = c.afterWrite("Delete", key, known, nil, err) }() // pending.go
	_, err = l2Call(c, func() (struct{}, error) { return struct{}{}, c.l2.Delete(ctx, key) })
	c.l1.Invalidate(key)
	if err != nil {
		c.stats.writeErrors.Add(1)
		if errors.Is(err, l2.ErrInvalidRequest) || errors.Is(err, l2.ErrConflict) {
			return err // DynamoDB refused the request, or other writers won: not an outage
		}
		return &L2Error{Op: "Delete", Err: err}
	}
	return nil
}

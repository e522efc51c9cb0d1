package l2

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// MaxLeaseOwnerBytes bounds a lease owner string.
const MaxLeaseOwnerBytes = 1024

// LeaseResult is the outcome of AcquireLease.
type LeaseResult struct {
	// Acquired: the caller holds the lease until Expires and should load the
	// key and Fill it with the lease.
	Acquired bool
	// Expires is when the acquired lease expires.
	Expires time.Time
	// Current is the live entry found instead (someone filled or wrote the
	// key): use it rather than loading.
	Current *Item
	// HolderExpires is when another owner's live lease expires: wait for its
	// fill (Get with backoff) until then, then try again. Zero with Current
	// nil and Acquired false means the item changed under the call: retry.
	HolderExpires time.Time
}

// AcquireLease takes a fill lease on key for owner, living ttl (> 0), after
// memcache's leases: only one node loads a cold key, and a Put or Delete
// arriving during the load voids the lease so the stale load is not stored.
//
// It lands only if the item is vacant (absent, tombstone, expired or
// placeholder) and holds no live lease. It leaves a placeholder: tombstone
// attributes (exp = now + TombstoneTTL, so an abandoned lease is swept) plus
// the lease; readers still see ErrNotFound, and the version does not move.
// When it does not land, the result says what is there instead. A corrupt
// item counts as vacant (unless a live lease of another owner can be read on
// it): the placeholder replaces it, with a new version (see Put), so the
// lease's Fill lands.
func (t *Table) AcquireLease(ctx context.Context, key, owner string, ttl time.Duration) (LeaseResult, error) {
	pk, err := t.EncodeKey(key)
	if err != nil {
		return LeaseResult{}, err
	}
	if err := checkOwner(owner); err != nil {
		return LeaseResult{}, err
	}
	if ttl <= 0 {
		return LeaseResult{}, ErrInvalidTTL
	}
	now := t.o.Now()
	expires := now.Add(ttl)
	_, old, err := t.write(ctx, "AcquireLease", pk, write{
		set:    "#lease = :owner, #lexp = :lexp, #tomb = :true, #exp = :texp",
		remove: "#v, #neg",
		cond:   vacantCond + " AND " + noLeaseCond,
		values: map[string]types.AttributeValue{
			":owner": &types.AttributeValueMemberS{Value: owner},
			":lexp":  num(expires.UnixMilli()),
			":texp":  num(expSeconds(now, t.o.TombstoneTTL)),
			":false": &types.AttributeValueMemberBOOL{Value: false},
			":nows":  num(now.Unix()),
			":nowms": num(now.UnixMilli()),
		},
		// A corrupt item counts as vacant, unless a live lease can be read
		// on it. The placeholder that replaces it gets a new version (the
		// old one is unusable), so the fill that follows moves on from
		// there.
		may: func(old map[string]types.AttributeValue) bool {
			_, held := looseLease(old, now)
			return !held
		},
	})
	if _, ok := conditionFailed(err); ok {
		res := LeaseResult{}
		r, perr := parseItem(fromTable(old))
		switch {
		case len(old) == 0:
		case perr != nil: // corrupt, with a live lease we may not take
			res.HolderExpires, _ = looseLease(old, now)
		case r.live(now):
			it := r.Item
			res.Current = &it
		case r.leaseHeld(now):
			res.HolderExpires = r.leaseExp
		}
		return res, nil
	}
	if err != nil {
		return LeaseResult{}, err
	}
	return LeaseResult{Acquired: true, Expires: time.UnixMilli(expires.UnixMilli())}, nil
}

// ReleaseLease gives up owner's lease on key (after a failed load), so that
// other nodes need not wait for it to expire. It fails with ErrLeaseLost
// (a *ConflictError) when the item no longer carries that lease.
func (t *Table) ReleaseLease(ctx context.Context, key, owner string) error {
	pk, err := t.EncodeKey(key)
	if err != nil {
		return err
	}
	if err := checkOwner(owner); err != nil {
		return err
	}
	_, err = t.update(ctx, "ReleaseLease", pk, update{
		expr:   "REMOVE #lease, #lexp",
		cond:   "#lease = :owner",
		values: map[string]types.AttributeValue{":owner": &types.AttributeValueMemberS{Value: owner}},
	}, false)
	if ccf, ok := conditionFailed(err); ok {
		return t.conflict(ccf.Item, true, t.o.Now())
	}
	return err
}

func checkOwner(owner string) error {
	switch {
	case owner == "":
		return fmt.Errorf("%w: empty", ErrInvalidLease)
	case !validUTF8(owner):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidLease)
	case len(owner) > MaxLeaseOwnerBytes:
		return fmt.Errorf("%w: %d bytes, max %d", ErrInvalidLease, len(owner), MaxLeaseOwnerBytes)
	}
	return nil
}

package l2

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// MaxLeaseOwnerBytes bounds a lease owner string.
const MaxLeaseOwnerBytes = 1024

// Attributes of a lease item (see the package documentation); a lease item
// also carries LeaseAttr, LeaseExpiresAttr and ExpiresAttr.
const (
	// LeaseVersionAttr is the key's version the lease is bound to.
	LeaseVersionAttr = "lver"
	// FormatAttr is the item format version (FormatVersion) of the item
	// that carries it. Only lease items carry it today: a key's item without
	// it may have been written by this release or an older one (format 1
	// and 2 key items differ only in that format 2 writes no lease on them).
	FormatAttr = "fv"
)

// FormatVersion is the item format this release writes: 2, leases in a
// sibling lease item. Format 1 (earlier releases) wrote the lease on the
// key's own item; this release still reads and honours such leases.
const FormatVersion = 2

// leasePKPrefix starts the partition key of every lease item. It holds no
// '#', and neither does the rest of a lease item's partition key, so it is
// never a key's partition key (Namespace + "#" + key), in any namespace:
// DecodeKey refuses it, and stream consumers skip its records.
const leasePKPrefix = "lease!"

// IsLeasePartitionKey reports whether pk is the partition key of a lease
// item (whatever its namespace): a stream record of one changes no entry.
func IsLeasePartitionKey(pk string) bool {
	return strings.HasPrefix(pk, leasePKPrefix) && !strings.Contains(pk, "#")
}

// LeasePartitionKey returns the partition key of key's lease item, for
// operators and tests (key must be valid; see EncodeKey).
func (t *Table) LeasePartitionKey(key string) string {
	return leasePK(t.o.Namespace + "#" + key)
}

// leasePK is the lease item's partition key for the key's partition key pk:
// a fixed 49 bytes (a hash, so that the longest key has one), with no '#'.
// Two keys sharing a hash would share a lease: one would wait for the
// other's load, never take its value (fills are guarded by their own key's
// version).
func leasePK(pk string) string {
	sum := sha256.Sum256([]byte(pk))
	return leasePKPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// LeaseResult is the outcome of AcquireLeaseAt.
type LeaseResult struct {
	// Acquired: the caller holds the lease until Expires and should load the
	// key and Fill it with the lease and IfVersion(the version it passed).
	Acquired bool
	// Expires is when the acquired lease expires.
	Expires time.Time
	// HolderExpires is when another owner's live lease expires: wait for its
	// fill (GetLeased with backoff) until then, then try again. Zero with
	// Acquired false means the lease item changed under the call: retry.
	HolderExpires time.Time
}

// AcquireLeaseAt takes a fill lease on key for owner, living ttl (> 0),
// after memcache's leases: only one node loads a cold key. version is the
// key's version that a read just found vacant (the Version of the Item Get
// returned with ErrNotFound; 0 when absent): the lease is bound to it.
//
// It is one conditional write on the key's lease item, a sibling of the
// key's item (same table, a partition key no key has; see the package
// documentation), never on the key's item: a lease makes no stream record
// that evicts the key anywhere, and the key's version does not move. It
// lands unless another owner holds a live lease bound to version or a later
// one; then HolderExpires says until when. A lease bound to an older version
// is void (the key was written, deleted or filled since) and is taken over;
// so is a lease bound to a version above 0 when the caller found no item at
// all (version 0): the key's item was swept by the table's TTL since the
// lease was taken, and the holder's fill, conditioned on that version, can
// only lose.
// It reads nothing: a live entry written since the caller's read is not
// seen here, but it makes the lease's Fill fail with that entry as Current.
//
// The lease does not guard the fill by itself: the Fill holding it must
// carry IfVersion(version), so that a Put, Delete or fill landing after the
// caller's read refuses it (ErrLeaseLost). A fill that lands moves the key's
// version and so voids the lease; the lease item is left for the table's TTL
// sweeper (its exp is the lease's expiry). A caller whose load did not land
// calls ReleaseLease.
func (t *Table) AcquireLeaseAt(ctx context.Context, key string, version int64, owner string, ttl time.Duration) (LeaseResult, error) {
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
	if version < 0 {
		return LeaseResult{}, fmt.Errorf("%w: negative version", ErrInvalidLease)
	}
	now := t.o.Now()
	expires := time.UnixMilli(now.Add(ttl).UnixMilli())
	_, err = t.update(ctx, "AcquireLease", leasePK(pk), update{
		expr: "SET #lease = :owner, #lexp = :lexp, #lver = :lver, #exp = :texp, #fv = :fv",
		// Free: no lease, an unreadable one, an expired one, one bound to an
		// older version of the key (its load was voided or stored), or the
		// caller's own.
		cond: "attribute_not_exists(#lease) OR NOT attribute_type(#lease, :tS) OR " +
			"NOT attribute_type(#lexp, :tN) OR NOT attribute_type(#lver, :tN) OR " +
			"#lexp <= :nowms OR #lver < :lver OR #lease = :owner" + sweptClause(version),
		values: map[string]types.AttributeValue{
			":owner": &types.AttributeValueMemberS{Value: owner},
			":lexp":  num(expires.UnixMilli()),
			":lver":  num(version),
			":texp":  num(expSeconds(now, ttl)),
			":fv":    num(FormatVersion),
			":nowms": num(now.UnixMilli()),
			":tS":    &types.AttributeValueMemberS{Value: "S"},
			":tN":    &types.AttributeValueMemberS{Value: "N"},
		},
	}, false)
	if ccf, ok := conditionFailed(err); ok {
		var res LeaseResult
		if l, ok := parseLease(ccf.Item); ok && now.Before(l.expires) {
			res.HolderExpires = l.expires
		}
		return res, nil
	}
	if err != nil {
		return LeaseResult{}, err
	}
	return LeaseResult{Acquired: true, Expires: expires}, nil
}

// ReleaseLease gives up owner's lease on key (after a load that did not
// land), so that other nodes need not wait for it to expire: one
// conditional UpdateItem that removes the lease from the lease item (which
// the table's TTL sweeper deletes at its exp). It fails with ErrLeaseLost (a
// *ConflictError) when the lease item no longer carries that lease.
func (t *Table) ReleaseLease(ctx context.Context, key, owner string) error {
	pk, err := t.EncodeKey(key)
	if err != nil {
		return err
	}
	if err := checkOwner(owner); err != nil {
		return err
	}
	_, err = t.update(ctx, "ReleaseLease", leasePK(pk), update{
		expr:   "REMOVE #lease, #lexp, #lver",
		cond:   "#lease = :owner",
		values: map[string]types.AttributeValue{":owner": &types.AttributeValueMemberS{Value: owner}},
	}, false)
	if ccf, ok := conditionFailed(err); ok {
		ce := &ConflictError{LeaseLost: true}
		if l, ok := parseLease(ccf.Item); ok && t.o.Now().Before(l.expires) {
			ce.HolderExpires = l.expires
		}
		return ce
	}
	return err
}

// GetLeased reads key as Get does and, when it has no live entry, whether a
// live fill lease holds it: Item.Leased, with ErrNotFound. It is for a node
// waiting on another's lease (see AcquireLeaseAt): one BatchGetItem call
// reading the key's item and its lease item (UnprocessedKeys retried as
// BatchGet does). A lease counts if it is live and bound to the key's
// current version or a later one, or if it is a live lease of format 1 on
// the key's item (written by an older release).
func (t *Table) GetLeased(ctx context.Context, key string) (Item, error) {
	pk, err := t.EncodeKey(key)
	if err != nil {
		return Item{}, err
	}
	lpk := leasePK(pk)
	keys := []map[string]types.AttributeValue{
		{PartitionKeyAttr: &types.AttributeValueMemberS{Value: pk}},
		{PartitionKeyAttr: &types.AttributeValueMemberS{Value: lpk}},
	}
	var itemM, leaseM map[string]types.AttributeValue
	backoff := t.o.BatchBackoff
	for attempt := 0; len(keys) > 0; attempt++ {
		if attempt > 0 {
			if attempt > t.o.BatchRetries {
				return Item{}, &PartialError{Keys: []string{key}}
			}
			t.stats.unprocessed.Add(1)
			if !sleepCtx(ctx, time.Duration(rand.Int64N(int64(backoff)+1))) {
				return Item{}, ctx.Err()
			}
			backoff = min(2*backoff, t.o.BatchMaxWait)
		}
		cctx, w := t.callCtxFirst(ctx, t.batchFirst(len(keys)))
		out, err := t.c.BatchGetItem(cctx, &dynamodb.BatchGetItemInput{
			RequestItems: map[string]types.KeysAndAttributes{t.o.Table: {
				Keys:           keys,
				ConsistentRead: aws.Bool(t.o.ConsistentRead),
			}},
		}, t.withProgress...)
		err = t.record(cctx, "GetLeased", err)
		w.close()
		if err != nil {
			return Item{}, err
		}
		for _, m := range out.Responses[t.o.Table] {
			if s, ok := m[PartitionKeyAttr].(*types.AttributeValueMemberS); ok && s.Value == lpk {
				leaseM = m
			} else {
				itemM = m
			}
		}
		keys = out.UnprocessedKeys[t.o.Table].Keys
	}
	now := t.o.Now()
	it, err := t.getResult(itemM, now)
	if err == ErrNotFound && !it.Leased {
		if l, ok := parseLease(leaseM); ok && now.Before(l.expires) && l.version >= it.Version && !(it.Version == 0 && l.version > 0) {
			it.Leased = true
		}
	}
	return it, err
}

// leaseRec is a lease item as read.
type leaseRec struct {
	owner   string
	expires time.Time
	version int64 // the key's version the lease is bound to
}

// parseLease reads a lease item; false when it holds no readable lease.
func parseLease(m map[string]types.AttributeValue) (leaseRec, bool) {
	o, ok := m[LeaseAttr].(*types.AttributeValueMemberS)
	if !ok || o.Value == "" {
		return leaseRec{}, false
	}
	e, ok1 := m[LeaseExpiresAttr].(*types.AttributeValueMemberN)
	v, ok2 := m[LeaseVersionAttr].(*types.AttributeValueMemberN)
	if !ok1 || !ok2 {
		return leaseRec{}, false
	}
	ms, err1 := strconv.ParseInt(e.Value, 10, 64)
	ver, err2 := strconv.ParseInt(v.Value, 10, 64)
	if err1 != nil || err2 != nil {
		return leaseRec{}, false
	}
	return leaseRec{owner: o.Value, expires: time.UnixMilli(ms), version: ver}, true
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

// sweptClause frees, for a caller that found no item (version 0), a lease
// bound to a later version: that item has been swept since (see
// AcquireLeaseAt).
func sweptClause(version int64) string {
	if version != 0 {
		return ""
	}
	return " OR #lver > :lver"
}

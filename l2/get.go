package l2

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// MaxBatchKeys is BatchGetItem's limit of keys per call.
const MaxBatchKeys = 100

// Get reads key. It returns ErrNotFound when the key has no live entry:
// absent, deleted (tombstone), expired (exp <= now, whether or not the TTL
// sweeper has deleted it yet) or only leased; the Item returned with
// ErrNotFound then carries the vacant item's Version (0 when absent), for a
// later Fill's IfVersion, and for an expired entry its last Value or NotFound
// with Expired set (stale-if-error may serve it; nothing else should). A negative entry is returned as an Item with
// NotFound set. A malformed item gives a *CorruptItemError.
func (t *Table) Get(ctx context.Context, key string) (Item, error) {
	pk, err := t.EncodeKey(key)
	if err != nil {
		return Item{}, err
	}
	cctx, w := t.callCtx(ctx)
	defer w.close()
	out, err := t.c.GetItem(cctx, &dynamodb.GetItemInput{
		TableName:      t.tableName,
		Key:            map[string]types.AttributeValue{PartitionKeyAttr: &types.AttributeValueMemberS{Value: pk}},
		ConsistentRead: aws.Bool(t.o.ConsistentRead),
	}, t.withProgress...)
	if err = t.record(cctx, "GetItem", err); err != nil {
		return Item{}, err
	}
	return t.getResult(out.Item, t.o.Now())
}

// getResult is Get's answer for the item m (GetItem's Item) at now.
func (t *Table) getResult(m map[string]types.AttributeValue, now time.Time) (Item, error) {
	if len(m) == 0 {
		return Item{}, ErrNotFound
	}
	r, err := t.parse(m)
	if err != nil {
		return Item{}, err
	}
	if !r.live(now) {
		if r.tomb || !(r.hasValue || r.NotFound) {
			return Item{Key: r.Key, Version: r.Version, Leased: r.leaseHeld(now)}, ErrNotFound
		}
		it := r.Item // expired, not yet swept: its last entry, for stale-if-error
		it.Expired = true
		return it, ErrNotFound
	}
	return r.Item, nil
}

// parse parses a table item, counting corrupt ones.
func (t *Table) parse(m map[string]types.AttributeValue) (rawItem, error) {
	r, err := parseItem(tableItem(m))
	if err != nil {
		t.stats.corrupt.Add(1)
	}
	return r, err
}

// BatchGet reads keys with BatchGetItem, MaxBatchKeys keys a call, after
// dropping duplicates. Keys without a live entry (as for Get), and keys whose
// item is corrupt (counted in Stats.CorruptItems), are absent from the map.
//
// UnprocessedKeys are retried up to Options.BatchRetries times with
// exponential backoff and full jitter. Chunks are read one after another;
// when a chunk's retries run out or a call fails, later chunks are not tried
// (DynamoDB is refusing work) and every key not read is listed in a
// *PartialError, returned with the entries read so far. Any invalid key fails the whole call before DynamoDB is asked, with the
// error EncodeKey gives.
//
// With IncludeVacant, keys whose item exists but holds no live entry are in
// the map too, as Items with Vacant set and only Key and Version filled.
// With OnCorrupt, each key whose item is corrupt is reported once.
func (t *Table) BatchGet(ctx context.Context, keys []string, optFns ...BatchGetOption) (map[string]Item, error) {
	var bo batchGetOptions
	for _, fn := range optFns {
		fn(&bo)
	}
	pks := make([]string, 0, len(keys))
	seen := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			continue
		}
		pk, err := t.EncodeKey(k)
		if err != nil {
			return nil, err
		}
		seen[k] = struct{}{}
		pks = append(pks, pk)
	}
	found := make(map[string]Item, len(pks))
	for start := 0; start < len(pks); start += MaxBatchKeys {
		chunk := pks[start:min(start+MaxBatchKeys, len(pks))]
		left, err := t.batchChunk(ctx, chunk, found, &bo)
		if len(left) > 0 || err != nil {
			left = append(left, pks[start+len(chunk):]...)
			notRead := make([]string, 0, len(left))
			for _, pk := range left {
				if k, ok := t.DecodeKey(pk); ok {
					notRead = append(notRead, k)
				}
			}
			return found, &PartialError{Keys: notRead, Err: err}
		}
	}
	return found, nil
}

// batchChunk reads up to MaxBatchKeys partition keys into found and returns
// those it could not read.
func (t *Table) batchChunk(ctx context.Context, pks []string, found map[string]Item, bo *batchGetOptions) (left []string, err error) {
	keys := make([]map[string]types.AttributeValue, len(pks))
	for i, pk := range pks {
		keys[i] = map[string]types.AttributeValue{PartitionKeyAttr: &types.AttributeValueMemberS{Value: pk}}
	}
	backoff := t.o.BatchBackoff
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			t.stats.unprocessed.Add(1)
		}
		out, err := t.batchCall(ctx, keys)
		if err != nil {
			return pksOf(keys), err
		}
		now := t.o.Now()
		for _, m := range out.Responses[t.o.Table] {
			t.batchItem(m, now, bo, found)
		}
		keys = out.UnprocessedKeys[t.o.Table].Keys
		if len(keys) == 0 {
			return nil, nil
		}
		if attempt >= t.o.BatchRetries {
			return pksOf(keys), nil
		}
		// Full jitter: a random wait in [0, backoff), so that the nodes
		// throttled together do not retry together.
		wait := time.Duration(rand.Int64N(int64(backoff) + 1))
		if !sleepCtx(ctx, wait) {
			return pksOf(keys), ctx.Err()
		}
		backoff = min(2*backoff, t.o.BatchMaxWait)
	}
}

// batchItem adds the item m of a BatchGetItem answer to found, as BatchGet
// answers it at now (or reports it to bo.onCorrupt).
func (t *Table) batchItem(m map[string]types.AttributeValue, now time.Time, bo *batchGetOptions, found map[string]Item) {
	if len(m) == 0 {
		return // no item (as Get answers it), not a corrupt one: found by FuzzItemDecoding
	}
	r, err := t.parse(m)
	if err != nil {
		if bo.onCorrupt != nil {
			if pk, ok := m[PartitionKeyAttr].(*types.AttributeValueMemberS); ok {
				if k, ok := t.DecodeKey(pk.Value); ok {
					bo.onCorrupt(k, err)
				}
			}
		}
		return
	}
	if !r.live(now) {
		if !bo.vacant {
			return
		}
		r.Item = Item{Key: r.Key, Version: r.Version, Vacant: true}
	}
	if pk, _ := tableItem(m).attr(PartitionKeyAttr); t.ownsPK(pk.s) {
		found[r.Key] = r.Item
	}
}

// BatchGetOption tweaks one BatchGet call.
type BatchGetOption func(*batchGetOptions)

type batchGetOptions struct {
	vacant    bool
	onCorrupt func(key string, err error)
}

// OnCorrupt makes BatchGet call fn once for each key whose item it read and
// found corrupt (err is a *CorruptItemError), on the caller's goroutine,
// before BatchGet returns. Such a key is absent from the map (with or
// without IncludeVacant), as Get answers it with ErrCorruptItem; either way
// it is counted once in Stats.CorruptItems. A caller keeping its own count
// should count each call once and not also count that key as a miss. A
// later Fill with IfVersion(0) replaces the corrupt item (see Fill).
func OnCorrupt(fn func(key string, err error)) BatchGetOption {
	return func(o *batchGetOptions) { o.onCorrupt = fn }
}

// IncludeVacant makes BatchGet also return the keys whose item holds no live
// entry (a tombstone, a lease placeholder, an expired entry), each as an Item
// with Vacant set and only Key and Version filled: the version a later Fill's
// IfVersion needs, as Get returns it alongside ErrNotFound. Keys absent from
// the map then have no item at all (version 0), or a corrupt one.
func IncludeVacant() BatchGetOption {
	return func(o *batchGetOptions) { o.vacant = true }
}

func (t *Table) batchCall(ctx context.Context, keys []map[string]types.AttributeValue) (*dynamodb.BatchGetItemOutput, error) {
	cctx, w := t.callCtxFirst(ctx, t.batchFirst(len(keys)))
	defer w.close()
	out, err := t.c.BatchGetItem(cctx, &dynamodb.BatchGetItemInput{
		RequestItems: map[string]types.KeysAndAttributes{t.o.Table: {
			Keys:           keys,
			ConsistentRead: aws.Bool(t.o.ConsistentRead),
		}},
	}, t.withProgress...)
	return out, t.record(cctx, "BatchGetItem", err)
}

// pksOf returns the partition keys of keys (skipping malformed ones: the
// keys come from our own request, echoed by DynamoDB).
func pksOf(keys []map[string]types.AttributeValue) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if s, ok := k[PartitionKeyAttr].(*types.AttributeValueMemberS); ok {
			out = append(out, s.Value)
		}
	}
	return out
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

package l2

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// OnCorrupt makes BatchGet call fn with the key of each item it leaves out
// because the item is malformed (counted in Stats.CorruptItems too), so a
// caller can tell such keys from absent ones. fn runs on BatchGet's
// goroutine, before BatchGet returns; an item whose partition key itself is
// malformed has no key to report and is not.
func OnCorrupt(fn func(key string)) BatchGetOption {
	return func(o *batchGetOptions) { o.onCorrupt = fn }
}

func (o *batchGetOptions) reportCorrupt(key string) {
	if o.onCorrupt != nil && key != "" {
		o.onCorrupt(key)
	}
}

// DeleteIfVersion deletes key as Delete does (a tombstone that moves the
// version forward and voids any lease), only if the key's version is still
// version (0: the item has no version). It is for retrying an invalidation
// that failed: it supersedes that one version of the key and never a write
// made since. A key at another version is a *ConflictError (ErrConflict)
// whose Current holds the live entry found, if any.
func (t *Table) DeleteIfVersion(ctx context.Context, key string, version int64) error {
	pk, err := t.EncodeKey(key)
	if err != nil {
		return err
	}
	now := t.o.Now()
	u := update{
		expr: "SET #tomb = :true, #exp = :exp REMOVE #v, #neg, #lease, #lexp ADD #ver :one",
		values: map[string]types.AttributeValue{
			":true": &types.AttributeValueMemberBOOL{Value: true},
			":exp":  num(expSeconds(now, t.o.TombstoneTTL)),
			":one":  num(1),
		},
	}
	u.cond = u.versionIs(version)
	_, err = t.update(ctx, "DeleteIfVersion", pk, u, false)
	if ccf, ok := conditionFailed(err); ok {
		return t.conflict(ccf.Item, false, now)
	}
	return err
}

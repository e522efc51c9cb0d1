package l2

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

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
	w := write{
		set:    "#tomb = :true, #exp = :exp",
		remove: "#v, #neg, #lease, #lexp, #w",
		bump:   true,
		values: map[string]types.AttributeValue{":exp": num(expSeconds(now, t.o.TombstoneTTL))},
	}
	w.cond = w.versionIs(version)
	// Over a corrupt item: only if the version it carries, read leniently,
	// is still the one to supersede (as Refresh).
	w.may = func(old map[string]types.AttributeValue) bool { return looseVersion(old) == version }
	_, old, err := t.write(ctx, "DeleteIfVersion", pk, w)
	if _, ok := conditionFailed(err); ok {
		return t.conflict(old, false, now)
	}
	return err
}

package tiered

import (
	"context"
	"time"

	"github.com/tieredcache/tieredcache/l2"
)

// store is what the cache uses of its table: exactly the methods of
// *l2.Table that tiered calls, with *l2.Table's documented semantics
// (versions, tombstones, leases, conditional fills, expiry filtering,
// typed errors). Production uses *l2.Table; tests may use the in-memory
// twin in internal/memstore, which passes the same contract suite
// (internal/storetest). Setup (EnsureTable, CheckTable) is not part of it:
// New does that on the concrete table before the seam.
type store interface {
	Get(ctx context.Context, key string) (l2.Item, error)
	BatchGet(ctx context.Context, keys []string, opts ...l2.BatchGetOption) (map[string]l2.Item, error)
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) (int64, error)
	Delete(ctx context.Context, key string) error
	DeleteIfVersion(ctx context.Context, key string, version int64) error
	Fill(ctx context.Context, key string, value []byte, notFound bool, ttl time.Duration, lease string, opts ...l2.FillOption) (int64, error)
	Refresh(ctx context.Context, key string, value []byte, notFound bool, ttl time.Duration, version int64) (int64, error)
	AcquireLease(ctx context.Context, key, owner string, ttl time.Duration) (l2.LeaseResult, error)
	ReleaseLease(ctx context.Context, key, owner string) error
	EncodeKey(key string) (string, error)
	DecodeKey(pk string) (string, bool)
	CheckValue(key string, value []byte) error
	Stats() l2.Stats
}

var _ store = (*l2.Table)(nil)

package l2

import (
	"context"
	"time"
)

// Store is the method set of a cache table that package tiered uses:
// exactly the data-path methods of *Table, with *Table's documented
// semantics (versions, tombstones, leases, conditional fills, expiry
// filtering, typed errors). Setup (EnsureTable, CheckTable) is not part of
// it. The in-memory twin internal/memstore implements it too, and one
// contract suite (internal/storetest) runs over both.
type Store interface {
	Get(ctx context.Context, key string) (Item, error)
	BatchGet(ctx context.Context, keys []string, opts ...BatchGetOption) (map[string]Item, error)
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) (int64, error)
	Delete(ctx context.Context, key string) error
	DeleteIfVersion(ctx context.Context, key string, version int64) error
	Fill(ctx context.Context, key string, value []byte, notFound bool, ttl time.Duration, lease string, opts ...FillOption) (int64, error)
	Refresh(ctx context.Context, key string, value []byte, notFound bool, ttl time.Duration, version int64) (int64, error)
	AcquireLeaseAt(ctx context.Context, key string, version int64, owner string, ttl time.Duration) (LeaseResult, error)
	ReleaseLease(ctx context.Context, key, owner string) error
	GetLeased(ctx context.Context, key string) (Item, error)
	EncodeKey(key string) (string, error)
	CheckKey(key string) error
	DecodeKey(pk string) (string, bool)
	CheckValue(key string, value []byte) error
	Stats() Stats
}

var _ Store = (*Table)(nil)

package l2

import (
	"context"
	"time"
)

// PutNotFound exposes putNotFound to the external tests.
func (t *Table) PutNotFound(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	return t.putNotFound(ctx, key, ttl)
}

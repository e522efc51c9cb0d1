package tiered_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/tiered"
)

type missKey struct{}

// TestOnMissWrapsEachFillNotHits: the hook runs once per miss, never on an
// L1 hit; the context it returns reaches the loader; end gets the fill's
// error.
func TestOnMissWrapsEachFillNotHits(t *testing.T) {
	var mu sync.Mutex
	var started []tiered.MissInfo
	var ended []error
	n := newNode(t, dynamolocal.TableName(t), func(o *tiered.Options[string]) {
		o.OnMiss = func(ctx context.Context, m tiered.MissInfo) (context.Context, func(error)) {
			mu.Lock()
			started = append(started, m)
			mu.Unlock()
			return context.WithValue(ctx, missKey{}, m.Op), func(err error) {
				mu.Lock()
				ended = append(ended, err)
				mu.Unlock()
			}
		}
	})
	ctx := testContext(t)
	var sawOp any
	loader := func(ctx context.Context, _ string) (string, error) {
		sawOp = ctx.Value(missKey{})
		return "v", nil
	}
	if v, err := n.GetOrLoad(ctx, "k", loader); err != nil || v != "v" {
		t.Fatalf("GetOrLoad = %q, %v", v, err)
	}
	for range 3 { // L1 hits: no fill, no hook
		if _, err := n.GetOrLoad(ctx, "k", loader); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("boom")
	if _, err := n.GetOrLoad(ctx, "bad", func(context.Context, string) (string, error) { return "", boom }); !errors.Is(err, boom) {
		t.Fatalf("GetOrLoad with a failing loader = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(started) != 2 || started[0] != (tiered.MissInfo{Op: "load", Keys: 1}) {
		t.Fatalf("OnMiss calls %+v; want 2, the first {load 1}", started)
	}
	if sawOp != "load" {
		t.Fatalf("the loader's ctx lacks the hook's value: %v", sawOp)
	}
	if len(ended) != 2 || ended[0] != nil || !errors.Is(ended[1], boom) {
		t.Fatalf("ends %v; want [nil boom]", ended)
	}
}

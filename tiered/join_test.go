package tiered_test

import (
	"context"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/tiered"
)

// heldGetMany starts a GetMany of a (in L2) and b (nowhere) on n whose batch
// loader blocks until release is closed: a's L2 answer is then held in the
// GetMany's load, unpublished. It returns once the loader has been called.
func heldGetMany(t *testing.T, n *node, release <-chan struct{}) <-chan error {
	t.Helper()
	called := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := n.GetMany(context.Background(), []string{"a", "b"}, func(_ context.Context, keys []string) (map[string]string, error) {
			close(called)
			<-release
			return map[string]string{"b": "b"}, nil
		})
		done <- err
	}()
	<-called
	return done
}

// TestJoinedLoadNeverPredatesAKnownWrite: a GetOrLoad must not join a
// GetMany's load that read its key before a write this node has since
// learned of, neither another node's (through the stream) nor its own (read
// your writes). Without that rule it would wait for the GetMany's loader and
// return the value the GetMany read before the write.
func TestJoinedLoadNeverPredatesAKnownWrite(t *testing.T) {
	for _, own := range []bool{false, true} {
		name := map[bool]string{false: "other-node", true: "own-write"}[own]
		t.Run(name, func(t *testing.T) {
			table := dynamolocal.TableName(t)
			a := newNode(t, table, func(o *tiered.Options[string]) { o.DisableLeases = true })
			b := newNode(t, table, nil)
			ctx := testContext(t)
			if err := b.Set(ctx, "a", "old"); err != nil {
				t.Fatal(err)
			}
			a.awaitEvent(t, "a") // a's consumer has seen the first write
			release := make(chan struct{})
			done := heldGetMany(t, a, release)
			defer func() {
				close(release)
				if err := <-done; err != nil {
					t.Errorf("GetMany: %v", err)
				}
			}()
			if own {
				if err := a.Set(ctx, "a", "new"); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := b.Set(ctx, "a", "new"); err != nil {
					t.Fatal(err)
				}
				a.awaitEvent(t, "a") // a now knows of the write
			}
			// Joining the held load would block until release; the bound
			// only turns that hang into a failure.
			getCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			v, err := a.GetOrLoad(getCtx, "a", constLoader("loaded"))
			if err != nil || v != "new" {
				t.Fatalf("GetOrLoad after the write = %q, %v; want \"new\" (it joined a load that read the key before)", v, err)
			}
		})
	}
}

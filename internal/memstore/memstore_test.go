package memstore_test

import (
	"sync"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/memstore"
	"github.com/tieredcache/tieredcache/internal/storetest"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestContract runs the store contract that l2.Table passes on DynamoDB
// Local (l2/contract_test.go) against the in-memory twin.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		// Not on a whole second, so that rounding of expiry is exercised.
		clk := &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 678_000_000, time.UTC)}
		s, err := memstore.New(memstore.Options{Namespace: storetest.Namespace, Writer: storetest.Writer, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return storetest.Harness{
			Store:   s,
			Now:     clk.Now,
			Advance: clk.Advance,
			Other: func(t *testing.T, writer string) storetest.Store {
				o, err := s.Handle(memstore.Options{Namespace: storetest.Namespace, Writer: writer, Now: clk.Now})
				if err != nil {
					t.Fatal(err)
				}
				return o
			},
			Corrupt: func(_ *testing.T, key string) { s.Corrupt(key) },
		}
	})
}

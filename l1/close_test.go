package l1

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCloseConcurrent closes a Cache, twice and from two goroutines, while
// others call every method in a loop. Ristretto alone panics here ("send on
// closed channel") or races; the test fails on a panic, on a race report,
// and, through goleak in TestMain, on a leaked goroutine.
func TestCloseConcurrent(t *testing.T) {
	rounds := 10
	if testing.Short() {
		rounds = 5
	}
	for r := range rounds {
		c, err := New[int](Options{MaxBytes: 64 << 10, BufferItems: 1})
		if err != nil {
			t.Fatal(err)
		}
		var (
			wg      sync.WaitGroup
			started sync.WaitGroup
			stop    atomic.Bool
		)
		workers := []func(i int, key string){
			func(i int, key string) { c.Get(key) },
			func(i int, key string) { c.Set(key, i, 64, 0) },
			func(i int, key string) { c.Fill(key, c.BeginFill(key), i, 64, 0) },
			func(i int, key string) { c.SetFenced(key, c.BeginFill(key), i, 64, 0) },
			func(i int, key string) { c.Invalidate(key) },
			func(i int, key string) { c.Replace(key, i, 64, 0, func(int) bool { return true }) },
			func(i int, key string) {
				if i%64 == 0 {
					c.Flush()
				}
			},
			func(i int, key string) {
				if i%64 == 0 {
					c.Wait()
					c.Stats()
				}
			},
		}
		for w, work := range workers {
			wg.Add(1)
			started.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					if i == 100 {
						started.Done()
					}
					if i > 100 && stop.Load() {
						return
					}
					work(i, fmt.Sprintf("k%d", (i*7+w)%50))
				}
			}()
		}
		started.Wait() // every worker is busy
		var closers sync.WaitGroup
		for range 2 {
			closers.Add(1)
			go func() {
				defer closers.Done()
				if err := c.Close(); err != nil {
					t.Errorf("round %d: Close: %v", r, err)
				}
			}()
		}
		closers.Wait()
		// Both Close calls have returned: the Cache is closed for every
		// caller, whatever the workers are doing.
		if _, ok := c.Get("k1"); ok {
			t.Fatalf("round %d: Get hit after Close", r)
		}
		if c.Set("k1", 1, 1, 0) {
			t.Fatalf("round %d: Set stored after Close", r)
		}
		stop.Store(true)
		wg.Wait()
		if err := c.Close(); err != nil {
			t.Fatalf("round %d: third Close: %v", r, err)
		}
	}
}

func TestClosedCache(t *testing.T) {
	c, err := New[string](Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Set("k", "v", 1, 0)
	mustGet(t, c, "k", "v")
	before := c.Stats()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	mustMiss(t, c, "k")
	f := c.BeginFill("k")
	for name, ok := range map[string]bool{
		"Set":       c.Set("k", "v", 1, 0),
		"Fill":      c.Fill("k", f, "v", 1, 0),
		"SetFenced": c.SetFenced("k", f, "v", 1, 0),
		"Replace":   c.Replace("k", "v", 1, 0, func(string) bool { return true }),
	} {
		if ok {
			t.Errorf("%s after Close: stored", name)
		}
	}
	c.Invalidate("k")
	c.Flush()
	c.Wait()
	s := c.Stats()
	if s.BytesUsed != 0 || s.Items != 0 {
		t.Errorf("Stats after Close: BytesUsed %d, Items %d; want 0, 0", s.BytesUsed, s.Items)
	}
	if s.Misses != before.Misses+1 || s.Hits != before.Hits || s.Sets != before.Sets {
		t.Errorf("Stats after Close: %+v, before Close: %+v", s, before)
	}
	if s.Flushes != 0 || s.Invalidations != 0 {
		t.Errorf("Flush/Invalidate after Close were counted: %+v", s)
	}
}

// TestCloseWaitsForGetInside plays a Get that has passed the closed check and
// is inside Ristretto (entered, not exited) when Close starts: Close must not
// close Ristretto until that Get leaves, and the Get's Ristretto call must
// work meanwhile.
func TestCloseWaitsForGetInside(t *testing.T) {
	c, err := New[int](Options{BufferItems: 1})
	if err != nil {
		t.Fatal(err)
	}
	c.Set("k", 7, 1, 0)
	r := &c.readers[3]
	r.enters.Add(1) // as Get does before its closed check
	closed := make(chan struct{})
	go func() {
		_ = c.Close()
		close(closed)
	}()
	for !c.closed.Load() {
		runtime.Gosched()
	}
	// Close has begun; it must now be waiting for our Get. Ristretto is
	// still open, so the Get's call into it (which with BufferItems 1
	// pushes to the policy's channel every time) must work.
	for range 100 {
		if v, ok := c.rc.Get("k"); !ok || v.v != 7 {
			t.Fatalf("Ristretto Get during Close = %d, %v", v.v, ok)
		}
	}
	// A non-event cannot be awaited: give a wrong Close ample time to
	// finish, then check Ristretto is still open and Close still waiting.
	select {
	case <-closed:
		t.Fatal("Close returned while a Get was inside Ristretto")
	case <-time.After(200 * time.Millisecond):
	}
	if v, ok := c.rc.Get("k"); !ok || v.v != 7 {
		t.Fatalf("Ristretto closed under a Get in flight: Get = %d, %v", v.v, ok)
	}
	r.exits.Add(1) // the Get leaves
	<-closed
}

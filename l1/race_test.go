package l1

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestFillRacingWrites races a Fill of a stale value against an Invalidate,
// Set or Flush that began after the fill's BeginFill, many times, on fresh
// keys (so Ristretto takes its asynchronous new-key path). A watcher Gets
// the key throughout: once the fencing write has returned, the stale value
// must never be seen, not even for a moment, and at the end the key holds
// exactly what the write left.
func TestFillRacingWrites(t *testing.T) {
	iterations := 1200
	if testing.Short() {
		iterations = 300
	}
	c := newTest[string](t, Options{MaxBytes: 1 << 20})
	ops := []string{"Invalidate", "Set", "Flush", "SetFenced"}
	for i := range iterations {
		op := ops[(i/2)%len(ops)]
		key := fmt.Sprintf("key-%d", i)
		f := c.BeginFill(key)
		var (
			wg      sync.WaitGroup
			written atomic.Bool // the fencing write has returned
			done    atomic.Bool
			start   = make(chan struct{})
			stale   atomic.Int64
		)
		wg.Add(3)
		go func() {
			defer wg.Done()
			<-start
			switch i % 4 {
			case 1: // vary which side tends to go first
				runtime.Gosched()
			case 3: // and sometimes fill only after the write returned
				for !written.Load() {
					runtime.Gosched()
				}
			}
			c.Fill(key, f, "stale", 5, 0)
		}()
		go func() {
			defer wg.Done()
			<-start
			if i%2 == 0 {
				runtime.Gosched()
			}
			switch op {
			case "Invalidate":
				c.Invalidate(key)
			case "Set":
				c.Set(key, "fresh", 5, 0)
			case "Flush":
				c.Flush()
			case "SetFenced":
				c.SetFenced(key, c.BeginFill(key), "fresh", 5, 0)
			}
			written.Store(true)
		}()
		go func() {
			defer wg.Done()
			<-start
			for !done.Load() {
				after := written.Load()
				if v, ok := c.Get(key); ok && v == "stale" && after {
					stale.Add(1)
				}
			}
		}()
		close(start)
		for !written.Load() {
			// wait for the write; the watcher keeps reading meanwhile
		}
		// Let the watcher read a little after the write returned: the
		// queued Set of the fill, if it escaped the fence, lands now.
		for range 50 {
			if v, ok := c.Get(key); ok && v == "stale" {
				stale.Add(1)
			}
		}
		done.Store(true)
		wg.Wait()
		if n := stale.Load(); n > 0 {
			t.Fatalf("iteration %d (%s): the stale fill was seen %d times after the write returned", i, op, n)
		}
		v, ok := c.Get(key)
		switch op {
		case "Invalidate", "Flush":
			if ok {
				t.Fatalf("iteration %d (%s): key holds %q, want a miss", i, op, v)
			}
		default:
			if !ok || v != "fresh" {
				t.Fatalf("iteration %d (%s): key holds %q, %v; want \"fresh\"", i, op, v, ok)
			}
		}
	}
	s := c.Stats()
	t.Logf("%d iterations: %d fills fenced, %d stores (fills and writes), %d dropped, %d rejected",
		iterations, s.SetsFenced, s.Sets, s.SetsDropped, s.SetsRejected)
	// Every fourth fill runs after its write returned: those at least
	// must have been fenced.
	if s.SetsFenced < uint64(iterations/4) {
		t.Errorf("%d fills fenced, want at least %d", s.SetsFenced, iterations/4)
	}
}

// TestSetSetNewKey: two Sets of a new key in a row must leave the second
// value. (Ristretto alone, with both Sets still queued, keeps the first: it
// applies the second as an "update" its policy refuses.)
func TestSetSetNewKey(t *testing.T) {
	c := newTest[int](t, Options{MaxBytes: 1 << 20})
	for i := range 2000 {
		key := fmt.Sprintf("key-%d", i)
		c.Set(key, 1, 1, 0)
		c.Set(key, 2, 1, 0)
		if v, ok := c.Get(key); !ok || v != 2 {
			t.Fatalf("%s after Set 1, Set 2: %d, %v", key, v, ok)
		}
	}
}

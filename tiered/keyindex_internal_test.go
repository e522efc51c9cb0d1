package tiered

import (
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/l2"
)

// TestKeyIndexKeepsKeysForAPeriod: a key stays found for at least a period
// after its registration, however the generations rotate, and is forgotten
// after two periods without one.
func TestKeyIndexKeepsKeysForAPeriod(t *testing.T) {
	var now int64
	x := newKeyIndex("ns", time.Minute, func() int64 { return now })
	period := x.period
	found := func(key string) bool {
		for _, k := range x.lookup(l2.KeyHash("ns", key), nil) {
			if k == key {
				return true
			}
		}
		return false
	}
	// Every key of one stripe, so that each add may rotate it.
	same := func(i int) string {
		for j := 0; ; j++ {
			k := "k" + string(rune('a'+i)) + string(rune('a'+j%26)) + string(rune('a'+j/26))
			if l2.KeyHash("ns", k)%keyIndexStripes == 0 {
				return k
			}
		}
	}
	a, b, c := same(0), same(1), same(2)
	now = period - 1
	x.add(a) // just before the first rotation
	now = period
	x.add(b) // rotates: a is in the previous generation
	if !found(a) || !found(b) {
		t.Fatalf("a key lost at the first rotation")
	}
	now += period - 1
	x.add(c) // no rotation yet
	if !found(a) {
		t.Fatalf("a lost before a period had passed")
	}
	now += 1
	x.add(c) // rotates again: a's generation is dropped (registered 1 period + 1 ago)
	if found(a) || !found(b) || !found(c) {
		t.Fatalf("after two rotations: a %v (want forgotten), b %v, c %v (want kept)", found(a), found(b), found(c))
	}
	if d := x.add(b); d != "" {
		t.Fatalf("re-adding a key displaced %q", d)
	}
}

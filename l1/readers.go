package l1

import (
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"
)

// The hit path must not write a memory word that every core writes (a single
// hits counter, or a reader count for Close, would bounce one cache line
// between all cores on every Get). Get instead writes to one of several
// readerStripes, each on its own pair of cache lines, picked per goroutine
// (see readerIndex): with more stripes than cores, two cores rarely write the
// same line.

// readerStripeSize is two cache lines: Intel's adjacent-line prefetcher pulls
// lines in 128-byte pairs, so 64-byte padding alone still false-shares.
const readerStripeSize = 128

// readerStripe counts the Gets that went through it.
//
// enters and exits bracket each Get's call into Ristretto, so Close can wait
// until no Get is inside Ristretto before closing it (Ristretto's Get can
// panic, sending on a closed channel, if it races with Ristretto's Close).
// Both only grow; a Get is inside while enters > exits. misses counts Gets
// that found nothing; hits are exits - misses.
type readerStripe struct {
	enters atomic.Uint64
	exits  atomic.Uint64
	misses atomic.Uint64
	peeks  atomic.Uint64 // Peeks: inside like Gets, counted as neither hit nor miss
	_      [readerStripeSize - 4*8]byte
}

// newReaderStripes returns a power-of-two number of stripes, at least
// 4 per P (so that two Ps collide on a stripe rarely) and at least 16.
func newReaderStripes() ([]readerStripe, uint32) {
	n := 16
	for n < 4*runtime.GOMAXPROCS(0) {
		n <<= 1
	}
	return make([]readerStripe, n), uint32(n - 1)
}

// readerIndex picks a stripe from the address of a variable on the calling
// goroutine's stack: each goroutine keeps writing the same stripe (until its
// stack moves), so a goroutine that Gets repeatedly on one P keeps that
// cache line local to its core. A random index per call (math/rand/v2) was
// tried first: each core then writes, half of the time, a line the other
// core wrote last, and the line transfer made Get 1.15x-1.4x raw Ristretto
// (BenchmarkGetHit, 2 cores) against 1.01x-1.08x with this index, with 2 or
// with 256 goroutines. Taking the address does not make x escape; the
// uintptr is only hashed, never turned back into a pointer.
func readerIndex() uint32 {
	var x byte
	p := uintptr(unsafe.Pointer(&x))
	// Goroutine stacks are at least 2 KiB apart; bits below 11 mostly
	// vary with call depth. Fibonacci hashing spreads the rest.
	return uint32((uint64(p>>11) * 0x9E3779B97F4A7C15) >> 40)
}

// waitReaders returns once every Get that entered before the caller set the
// closed flag has left Ristretto. Per stripe it reads exits before enters:
// both only grow and exits <= enters, so equal readings mean no Get was
// inside between the two loads, and every later Get sees the closed flag
// (it increments enters before loading the flag; both are sequentially
// consistent atomics) and never calls Ristretto.
func waitReaders(stripes []readerStripe) {
	for i := range stripes {
		s := &stripes[i]
		for spins := 0; ; spins++ {
			x := s.exits.Load()
			if s.enters.Load() == x {
				break
			}
			// A Get in flight finishes in well under a microsecond unless
			// its goroutine was descheduled: yield, then back off.
			if spins < 100 {
				runtime.Gosched()
			} else {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}
}

// readerTotals sums the stripes. It reads misses before exits so that a Get
// counted as a miss is (almost always) also counted as exited: hits are not
// overstated by a Get in flight.
func readerTotals(stripes []readerStripe) (hits, misses uint64) {
	for i := range stripes {
		m := stripes[i].misses.Load()
		p := stripes[i].peeks.Load()
		x := stripes[i].exits.Load()
		misses += m
		if x > m+p {
			hits += x - m - p
		}
	}
	return hits, misses
}

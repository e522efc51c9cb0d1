// Package bench holds the go test -bench suites run by `make bench`: the L1
// hit path against raw Ristretto, the L2 hit path, a cold-key stampede and the
// cross-node invalidation lag. The benchmarks live in the _test files; this
// file only has the key-sequence helper they share.
package bench

import "math/rand"

// ZipfIndices returns count indices in [0, n) drawn from a Zipf distribution
// with exponent s (> 1) and v = 1, from a source seeded with seed: index 0 is
// the hottest key. The sequence is generated up front so that the generator
// (math/rand's Zipf is neither cheap nor safe for concurrent use) stays out of
// timed loops; each goroutine of a parallel benchmark walks its own sequence.
// math/rand/v2 has no Zipf generator, hence math/rand.
func ZipfIndices(seed int64, n, count int, s float64) []int32 {
	if n <= 0 || count <= 0 {
		return nil
	}
	z := rand.NewZipf(rand.New(rand.NewSource(seed)), s, 1, uint64(n-1))
	out := make([]int32, count)
	for i := range out {
		out[i] = int32(z.Uint64())
	}
	return out
}

// ZipfSequences returns one Zipf sequence per goroutine, each of length
// count (rounded up to a power of two so a timed loop can wrap with a mask),
// from distinct seeds.
func ZipfSequences(goroutines, n, count int, s float64) [][]int32 {
	size := 1
	for size < count {
		size <<= 1
	}
	seqs := make([][]int32, goroutines)
	for g := range seqs {
		seqs[g] = ZipfIndices(int64(g)+1, n, size, s)
	}
	return seqs
}

// Package zipf generates Zipf-distributed key index sequences for benchmarks
// (package bench, and benchmarks in nested modules of this repository).
package zipf

import "math/rand"

// Indices returns count indices in [0, n) drawn from a Zipf distribution
// with exponent s (> 1) and v = 1, from a source seeded with seed: index 0 is
// the hottest key. The sequence is generated up front so that the generator
// (math/rand's Zipf is neither cheap nor safe for concurrent use) stays out of
// timed loops; each goroutine of a parallel benchmark walks its own sequence.
// (math/rand, not math/rand/v2, so that the sequences stay those the
// published figures were measured with.)
func Indices(seed int64, n, count int, s float64) []int32 {
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

// Sequences returns one Zipf sequence per goroutine, each of length
// count (rounded up to a power of two so a timed loop can wrap with a mask),
// from distinct seeds.
func Sequences(goroutines, n, count int, s float64) [][]int32 {
	size := 1
	for size < count {
		size <<= 1
	}
	seqs := make([][]int32, goroutines)
	for g := range seqs {
		seqs[g] = Indices(int64(g)+1, n, size, s)
	}
	return seqs
}

package tiered

import "sort"

// heldSize is what the encoded value b of an L2 item occupies on the heap:
// its capacity rounded up to the allocator's size class (to whole pages
// beyond the largest class). L1 charges an entry filled from L2 that much:
// BytesCodec keeps b itself as the value, and the SDK's base64 buffer is a
// little longer than the value (1,026 bytes for 1,024), which puts it in the
// next size class (1,152). Charging what is held, rather than copying the
// value into an exact-size buffer, keeps the L1 budget true without a copy
// per fill. For other codecs, b is a close bound on what the decoded value
// holds.
func heldSize(b []byte) int64 {
	n := cap(b)
	if n <= 0 {
		return 0
	}
	if n > sizeClasses[len(sizeClasses)-1] {
		const page = 8 << 10
		return int64((n + page - 1) / page * page)
	}
	return int64(sizeClasses[sort.SearchInts(sizeClasses, n)])
}

// sizeClasses are the allocator's size classes for byte slices, as
// append reports them (it rounds a new slice's capacity up to its class):
// taken from the runtime itself, so they follow the Go release in use.
var sizeClasses = func() []int {
	var out []int
	for n := 1; n <= 32<<10; {
		c := cap(append([]byte(nil), make([]byte, n)...))
		out = append(out, c)
		n = c + 1
	}
	return out
}()

package tiered

import (
	"encoding/base64"
	"testing"
)

// TestHeldSizeIsTheAllocation: heldSize is the allocator's size for a
// buffer's capacity, never less than the capacity: what L1 charges for a
// value kept from L2 (1,026 bytes of capacity for a 1 KB value decoded from
// base64 occupy 1,152).
func TestHeldSizeIsTheAllocation(t *testing.T) {
	decoded, err := base64.StdEncoding.DecodeString(base64.StdEncoding.EncodeToString(make([]byte, 1024)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		b    []byte
		want int64
	}{
		{nil, 0},
		{make([]byte, 0, 1), 8},
		{make([]byte, 1024), 1024},
		{decoded, 1152},
		{make([]byte, 32<<10), 32 << 10},
		{make([]byte, 40000), 40960},
	} {
		if got := heldSize(tc.b); got != tc.want {
			t.Errorf("heldSize(cap %d) = %d; want %d", cap(tc.b), got, tc.want)
		}
	}
	for n := 1; n <= 64<<10; n += 7 {
		b := append([]byte(nil), make([]byte, n)...) // the runtime's own rounding
		if got := heldSize(make([]byte, n)); got < int64(n) || n <= 32<<10 && got != int64(cap(b)) {
			t.Fatalf("heldSize(cap %d) = %d; want %d", n, got, cap(b))
		}
	}
}

package compress_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/klauspost/compress/zstd"
	"go.uber.org/goleak"

	"github.com/tieredcache/tieredcache/compress"
	"github.com/tieredcache/tieredcache/tiered"
)

func wrap[V any](t testing.TB, inner tiered.Codec[V], o compress.Options) *compress.Codec[V] {
	t.Helper()
	c, err := compress.Wrap(inner, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRoundTripAndHeader(t *testing.T) {
	for _, alg := range []compress.Algorithm{compress.Zstd, compress.S2} {
		for _, size := range []int{100, 1 << 10, 10 << 10, 100 << 10} {
			c := wrap[Page](t, tiered.JSONCodec[Page]{}, compress.Options{Algorithm: alg})
			v := realisticJSON(size, uint64(size))
			raw, _ := json.Marshal(v)
			b, err := c.Encode(v)
			if err != nil {
				t.Fatal(err)
			}
			compressed := len(raw) >= compress.DefaultThreshold
			want := compress.HeaderZstd
			if alg == compress.S2 {
				want = compress.HeaderS2
			}
			switch {
			case compressed && (b[0] != want || len(b) >= len(raw)):
				t.Errorf("%v %d B: stored %d B with header %#x, want shorter with %#x", alg, len(raw), len(b), b[0], want)
			case !compressed && !bytes.Equal(b, raw):
				t.Errorf("%v %d B: below the threshold the JSON must be stored as it is", alg, len(raw))
			}
			got, err := c.Decode(b)
			if err != nil || !reflect.DeepEqual(got, v) {
				t.Fatalf("%v %d B: round trip: err %v, equal %v", alg, len(raw), err, reflect.DeepEqual(got, v))
			}
		}
	}
}

// Values written before compression was enabled, and values written with the
// other algorithm, decode.
func TestDecodesLegacyAndOtherAlgorithm(t *testing.T) {
	v := realisticJSON(10<<10, 7)
	legacy, _ := tiered.JSONCodec[Page]{}.Encode(v)
	z := wrap[Page](t, tiered.JSONCodec[Page]{}, compress.Options{})
	s := wrap[Page](t, tiered.JSONCodec[Page]{}, compress.Options{Algorithm: compress.S2})
	zb, _ := z.Encode(v)
	sb, _ := s.Encode(v)
	for name, b := range map[string][]byte{"legacy": legacy, "zstd": zb, "s2": sb} {
		for cname, c := range map[string]*compress.Codec[Page]{"zstd": z, "s2": s} {
			got, err := c.Decode(b)
			if err != nil || !reflect.DeepEqual(got, v) {
				t.Errorf("%s codec decoding a %s value: err %v", cname, name, err)
			}
		}
	}
}

// A binary value that begins with a header byte is escaped, so it is not
// mistaken for a compressed one.
func TestHeaderBytesEscaped(t *testing.T) {
	c := wrap[[]byte](t, tiered.BytesCodec{}, compress.Options{})
	for _, first := range []byte{compress.HeaderS2, compress.HeaderRaw, compress.HeaderZstd, 0xFC, 0} {
		v := []byte{first, 1, 2, 3}
		b, err := c.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		escaped := first >= compress.HeaderS2
		if escaped != (len(b) == len(v)+1 && b[0] == compress.HeaderRaw) {
			t.Errorf("value starting %#x: stored %x, escaped want %v", first, b, escaped)
		}
		got, err := c.Decode(b)
		if err != nil || !bytes.Equal(got, v) {
			t.Errorf("value starting %#x: decoded %x, %v", first, got, err)
		}
	}
	if b, _ := c.Encode([]byte{}); len(b) != 0 {
		t.Errorf("empty value stored as %x", b)
	}
}

// Incompressible values are stored uncompressed: compression never grows an
// item.
func TestIncompressibleStoredRaw(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	v := make([]byte, 8<<10)
	for i := range v {
		v[i] = byte(r.Uint32())
	}
	v[0] = 'x'
	for _, alg := range []compress.Algorithm{compress.Zstd, compress.S2} {
		b, _ := wrap[[]byte](t, tiered.BytesCodec{}, compress.Options{Algorithm: alg}).Encode(v)
		if !bytes.Equal(b, v) {
			t.Errorf("%v: random bytes stored as %d B, want the %d B as they are", alg, len(b), len(v))
		}
	}
}

func TestCorruptAndBombsAreErrors(t *testing.T) {
	c := wrap[[]byte](t, tiered.BytesCodec{}, compress.Options{MaxDecodedSize: 1 << 20})
	big := bytes.Repeat([]byte("a"), 4<<20) // compresses to a few hundred bytes
	enc, _ := zstd.NewWriter(nil)
	bomb := enc.EncodeAll(big, []byte{compress.HeaderZstd})
	_ = enc.Close()
	s2bomb, _ := wrap[[]byte](t, tiered.BytesCodec{}, compress.Options{Algorithm: compress.S2}).Encode(big)
	for name, b := range map[string][]byte{
		"zstd garbage": {compress.HeaderZstd, 1, 2, 3},
		"zstd empty":   {compress.HeaderZstd},
		"s2 garbage":   {compress.HeaderS2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
		"zstd bomb":    bomb,
		"s2 bomb":      s2bomb,
	} {
		if _, err := c.Decode(b); !errors.Is(err, compress.ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", name, err)
		}
	}
}

func TestWrapRefusesBadOptions(t *testing.T) {
	if _, err := compress.Wrap[[]byte](nil, compress.Options{}); !errors.Is(err, compress.ErrInvalidOptions) {
		t.Errorf("nil inner: %v", err)
	}
	if _, err := compress.Wrap[[]byte](tiered.BytesCodec{}, compress.Options{Algorithm: 9}); !errors.Is(err, compress.ErrInvalidOptions) {
		t.Errorf("bad algorithm: %v", err)
	}
	if _, err := compress.Wrap[[]byte](tiered.BytesCodec{}, compress.Options{MaxDecodedSize: -1}); !errors.Is(err, compress.ErrInvalidOptions) {
		t.Errorf("negative MaxDecodedSize: %v", err)
	}
}

// The codec starts no goroutine (EncodeAll/DecodeAll only), so it needs no Close.
func TestNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := wrap[Page](t, tiered.JSONCodec[Page]{}, compress.Options{})
	v := realisticJSON(100<<10, 3)
	b, _ := c.Encode(v)
	if _, err := c.Decode(b); err != nil {
		t.Fatal(err)
	}
}

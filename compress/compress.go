// Package compress is an opt-in tiered.Codec wrapper that compresses encoded
// values above a size threshold with zstd or S2
// (github.com/klauspost/compress), to cut DynamoDB's read and write units:
// DynamoDB bills reads per 4 KB and writes per 1 KB of item size.
//
//	codec, err := compress.Wrap[User](tiered.JSONCodec[User]{}, compress.Options{})
//	cache, err := tiered.New(ctx, tiered.Options[User]{..., Codec: codec})
//
// It lives in a module of its own so that the core module does not depend on
// klauspost/compress.
//
// # Format
//
// A value whose first byte is one of three header bytes is read by that
// byte; any other value is passed to the inner codec as it is:
//
//   - 0xFF: the rest is a zstd frame;
//   - 0xFD: the rest is an S2 block;
//   - 0xFE: the rest is the inner codec's bytes, stored uncompressed; used only
//     for values that themselves begin with 0xFD, 0xFE or 0xFF.
//
// Values below the threshold, and values that do not shrink, are stored
// uncompressed and without a header. So compressed and uncompressed values
// coexist in one table; values written before the wrapper was enabled decode
// unchanged (the three header bytes never begin JSON, UTF-8 text or
// encoding/json output, so this holds for JSONCodec and StringCodec; a binary
// codec whose values may begin with 0xFD to 0xFF needs a new namespace); and
// either algorithm decodes whatever the other wrote. Rolling back to the bare
// inner codec makes compressed items corrupt for it: each is then a counted
// miss (Stats.L2Corrupt) that the loader refills, never a wrong value.
package compress

import (
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/tieredcache/tieredcache/tiered"
)

// Header bytes (see the package doc).
const (
	HeaderZstd byte = 0xFF
	HeaderRaw  byte = 0xFE
	HeaderS2   byte = 0xFD
)

// Algorithm selects the compressor for new values. Decoding reads the
// header, whatever the Algorithm.
type Algorithm uint8

const (
	// Zstd compresses more (JSON values here: 4 to 10 times smaller) at a
	// higher CPU cost. The default.
	Zstd Algorithm = iota
	// S2 is faster and compresses less.
	S2
)

func (a Algorithm) String() string {
	switch a {
	case Zstd:
		return "zstd"
	case S2:
		return "s2"
	}
	return fmt.Sprintf("Algorithm(%d)", uint8(a))
}

// Defaults for Options.
const (
	// DefaultThreshold: a value under 1 KB already fits one write unit and
	// one read unit, so compressing it cannot save a unit.
	DefaultThreshold = 1024
	// DefaultMaxDecodedSize bounds a decompressed value, so that a foreign or
	// hostile item (a compression bomb) cannot exhaust memory.
	DefaultMaxDecodedSize = 64 << 20
)

// Options configure Wrap. The zero value means zstd above 1 KB.
type Options struct {
	Algorithm Algorithm
	// Threshold: encoded values of at least this many bytes are compressed.
	// 0 means DefaultThreshold; negative means every value.
	Threshold int
	// ZstdLevel is the zstd encoder level; 0 means zstd.SpeedDefault.
	ZstdLevel zstd.EncoderLevel
	// MaxDecodedSize bounds a decompressed value; 0 means
	// DefaultMaxDecodedSize. A larger one is an error matching ErrCorrupt.
	MaxDecodedSize int
}

// ErrCorrupt says a value with a compression header could not be
// decompressed. tiered treats it as a corrupt item: a counted miss.
var ErrCorrupt = errors.New("compress: corrupt compressed value")

// ErrInvalidOptions says Wrap was given bad options.
var ErrInvalidOptions = errors.New("compress: invalid options")

// Codec wraps an inner tiered.Codec. Safe for concurrent use; it holds no
// goroutines and needs no Close.
type Codec[V any] struct {
	inner     tiered.Codec[V]
	alg       Algorithm
	threshold int
	maxSize   int
	enc       *zstd.Encoder
	dec       *zstd.Decoder
}

var _ tiered.Codec[[]byte] = (*Codec[[]byte])(nil)

// Wrap returns a Codec that compresses what inner encodes.
func Wrap[V any](inner tiered.Codec[V], o Options) (*Codec[V], error) {
	if inner == nil {
		return nil, fmt.Errorf("%w: inner codec is nil", ErrInvalidOptions)
	}
	if o.Algorithm != Zstd && o.Algorithm != S2 {
		return nil, fmt.Errorf("%w: unknown algorithm %d", ErrInvalidOptions, o.Algorithm)
	}
	if o.MaxDecodedSize < 0 {
		return nil, fmt.Errorf("%w: MaxDecodedSize %d is negative", ErrInvalidOptions, o.MaxDecodedSize)
	}
	c := &Codec[V]{inner: inner, alg: o.Algorithm, threshold: o.Threshold, maxSize: o.MaxDecodedSize}
	switch {
	case c.threshold == 0:
		c.threshold = DefaultThreshold
	case c.threshold < 0:
		c.threshold = 0
	}
	if c.maxSize == 0 {
		c.maxSize = DefaultMaxDecodedSize
	}
	level := o.ZstdLevel
	if level == 0 {
		level = zstd.SpeedDefault
	}
	var err error
	// Used with EncodeAll and DecodeAll only: no goroutines are started.
	if c.enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(level)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidOptions, err)
	}
	if c.dec, err = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(uint64(c.maxSize)), zstd.WithDecoderConcurrency(0)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidOptions, err)
	}
	return c, nil
}

// JSON is Wrap(tiered.JSONCodec[V]{}, o).
func JSON[V any](o Options) (*Codec[V], error) { return Wrap[V](tiered.JSONCodec[V]{}, o) }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// Encode encodes v with the inner codec, then compresses the result if it is
// at least the threshold long and compression makes it shorter.
func (c *Codec[V]) Encode(v V) ([]byte, error) {
	b, err := c.inner.Encode(v)
	if err != nil {
		return nil, err
	}
	if len(b) >= c.threshold && len(b) > 0 {
		if out := c.compress(b); out != nil {
			return out, nil
		}
	}
	if len(b) > 0 && b[0] >= HeaderS2 {
		out := make([]byte, 1+len(b))
		out[0] = HeaderRaw
		copy(out[1:], b)
		return out, nil
	}
	return b, nil
}

// compress returns header + compressed b, or nil when that is not shorter.
func (c *Codec[V]) compress(b []byte) []byte {
	switch c.alg {
	case S2:
		if s2.MaxEncodedLen(len(b)) < 0 {
			return nil
		}
		out := make([]byte, 1+s2.MaxEncodedLen(len(b)))
		out[0] = HeaderS2
		n := len(s2.Encode(out[1:], b))
		if 1+n >= len(b) {
			return nil
		}
		return out[:1+n]
	default:
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		tmp := c.enc.EncodeAll(b, append((*bp)[:0], HeaderZstd))
		*bp = tmp[:0]
		if len(tmp) >= len(b) {
			return nil
		}
		return append([]byte(nil), tmp...) // exact size: L2 and L1 keep it
	}
}

// Decode decompresses b according to its header byte (none: b is the inner
// codec's bytes as they are) and decodes it with the inner codec.
func (c *Codec[V]) Decode(b []byte) (V, error) {
	raw, err := c.Decompress(b)
	if err != nil {
		var zero V
		return zero, err
	}
	return c.inner.Decode(raw)
}

// Decompress returns the inner codec's bytes for a stored value.
func (c *Codec[V]) Decompress(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return b, nil
	}
	switch b[0] {
	case HeaderRaw:
		return b[1:], nil
	case HeaderS2:
		n, err := s2.DecodedLen(b[1:])
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %v", ErrCorrupt, err)
		}
		if n > c.maxSize {
			return nil, fmt.Errorf("%w: s2: decoded size %d over %d", ErrCorrupt, n, c.maxSize)
		}
		out, err := s2.Decode(make([]byte, n), b[1:])
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %v", ErrCorrupt, err)
		}
		return out, nil
	case HeaderZstd:
		if len(b) == 1 {
			return nil, fmt.Errorf("%w: zstd: empty frame", ErrCorrupt)
		}
		out, err := c.dec.DecodeAll(b[1:], nil)
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
		return out, nil
	}
	return b, nil
}

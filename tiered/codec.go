package tiered

import (
	"encoding/json"
	"fmt"
)

// Codec turns values into the bytes stored in L2 and back. Implementations
// must be safe for concurrent use. L1 stores decoded values, so a Codec runs
// only on L2 reads and writes, never on an L1 hit.
type Codec[V any] interface {
	Encode(v V) ([]byte, error)
	Decode(b []byte) (V, error)
}

// BytesCodec stores []byte values as they are. Values are shared, not copied:
// callers must not modify a slice after Set nor one returned by Get.
type BytesCodec struct{}

// Encode returns b itself.
func (BytesCodec) Encode(b []byte) ([]byte, error) { return b, nil }

// Decode returns b itself. An entry filled from L2 is charged to L1 for
// what b occupies, spare capacity included (see heldSize).
func (BytesCodec) Decode(b []byte) ([]byte, error) { return b, nil }

// StringCodec stores strings as UTF-8 bytes.
type StringCodec struct{}

// Encode converts s to bytes.
func (StringCodec) Encode(s string) ([]byte, error) { return []byte(s), nil }

// Decode converts b to a string.
func (StringCodec) Decode(b []byte) (string, error) { return string(b), nil }

// JSONCodec stores values as JSON (encoding/json).
type JSONCodec[V any] struct{}

// Encode marshals v.
func (JSONCodec[V]) Encode(v V) ([]byte, error) { return json.Marshal(v) }

// Decode unmarshals b.
func (JSONCodec[V]) Decode(b []byte) (V, error) {
	var v V
	err := json.Unmarshal(b, &v)
	return v, err
}

// decodeError says an L2 item's value could not be decoded by the Codec. It
// never reaches a caller: such an item is a miss, counted in Stats.L2.Corrupt.
type decodeError struct {
	Err error
}

func (e *decodeError) Error() string { return fmt.Sprintf("tiered: decode L2 value: %v", e.Err) }
func (e *decodeError) Unwrap() error { return e.Err }

// defaultCodec picks BytesCodec for []byte, StringCodec for string and JSON
// for everything else.
func defaultCodec[V any]() Codec[V] {
	var zero V
	switch any(zero).(type) {
	case []byte:
		return any(BytesCodec{}).(Codec[V])
	case string:
		return any(StringCodec{}).(Codec[V])
	}
	return JSONCodec[V]{}
}

// CodecPanicError says the Codec panicked (Op is "Encode" or "Decode"); the
// panic was contained. A Decode panic makes the item a counted miss (no
// caller sees it); an Encode panic is wrapped in an *EncodeError (nothing
// written).
// errors.Is(err, ErrCodecPanic).
type CodecPanicError struct {
	Op    string
	Value any
}

func (e *CodecPanicError) Error() string {
	return fmt.Sprintf("tiered: codec %s panicked: %v", e.Op, e.Value)
}

// Unwrap makes errors.Is(err, ErrCodecPanic) true.
func (e *CodecPanicError) Unwrap() error { return ErrCodecPanic }

// decode is the one place values are decoded: a Decode error or panic is a
// *decodeError, never a crash. Every path (Get, GetOrLoad, GetMany, leases,
// refresh-ahead, the stream) decodes through it.
func (c *Cache[V]) decode(b []byte) (v V, err error) {
	defer func() {
		if r := recover(); r != nil {
			var zero V
			v, err = zero, &decodeError{Err: &CodecPanicError{Op: "Decode", Value: r}}
		}
	}()
	if v, err = c.o.Codec.Decode(b); err != nil {
		return v, &decodeError{Err: err}
	}
	return v, nil
}

// encode is the one place values are encoded: an Encode error or panic is an
// *EncodeError, never a crash.
func (c *Cache[V]) encode(v V) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, &EncodeError{Err: &CodecPanicError{Op: "Encode", Value: r}}
		}
	}()
	if b, err = c.o.Codec.Encode(v); err != nil {
		return nil, &EncodeError{Err: err}
	}
	return b, nil
}

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

// Decode returns b itself.
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

// DecodeError says an L2 item's value could not be decoded by the Codec. Such
// an item is treated as a miss and counted in Stats.L2Corrupt.
type DecodeError struct {
	Err error
}

func (e *DecodeError) Error() string { return fmt.Sprintf("tiered: decode L2 value: %v", e.Err) }
func (e *DecodeError) Unwrap() error { return e.Err }

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

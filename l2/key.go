package l2

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Attribute names of the item format (see the package documentation).
const (
	PartitionKeyAttr = "pk"
	ValueAttr        = "v"
	VersionAttr      = "ver"
	ExpiresAttr      = "exp" // the table's TTL attribute
	NegativeAttr     = "neg"
	TombstoneAttr    = "tomb"
	LeaseAttr        = "lease"
	LeaseExpiresAttr = "lexp"
	WriterAttr       = "w" // Options.Writer of the handle that stored the entry
	flagsAttr        = "cf"
)

// Size limits.
const (
	// MaxPartitionKeyBytes is DynamoDB's limit on a partition key value.
	MaxPartitionKeyBytes = 2048
	// MaxItemBytes is DynamoDB's item size limit (400 KB: names and values).
	MaxItemBytes = 400 * 1024
	// ItemOverheadBytes bounds what an item holds besides the partition key
	// value and the value bytes: every attribute name of the format (28
	// bytes), four numbers of at most 21 bytes each, three booleans, a
	// writer of at most MaxWriterBytes, and slack. A value fits when len(pk)
	// + len(value) + ItemOverheadBytes <= MaxItemBytes. Leases are removed by
	// every write that stores a value, so the owner string does not count.
	ItemOverheadBytes = 200
	// MaxWriterBytes bounds Options.Writer.
	MaxWriterBytes = 64
)

// EncodeKey returns the partition key value for key: Namespace + "#" + key.
// It fails with ErrEmptyKey, ErrInvalidKey (not UTF-8) or a *KeyTooLongError.
func (t *Table) EncodeKey(key string) (string, error) {
	if err := t.checkKey(key); err != nil {
		return "", err
	}
	return t.o.Namespace + "#" + key, nil
}

// CheckKey returns the error EncodeKey gives for key (nil for a valid key),
// without building the partition key: a check that allocates nothing.
func (t *Table) CheckKey(key string) error { return t.checkKey(key) }

func (t *Table) checkKey(key string) error {
	if key == "" {
		return ErrEmptyKey
	}
	if !validUTF8(key) {
		return fmt.Errorf("%w: not valid UTF-8 at byte %d", ErrInvalidKey, firstInvalid(key))
	}
	if n := len(t.o.Namespace) + 1 + len(key); n > MaxPartitionKeyBytes {
		return &KeyTooLongError{Len: n, Max: MaxPartitionKeyBytes}
	}
	return nil
}

// DecodeKey returns the key of a partition key value of this table's
// namespace; ok is false for any other partition key (another namespace, or
// not of this format).
func (t *Table) DecodeKey(pk string) (key string, ok bool) {
	ns, key, found := strings.Cut(pk, "#")
	if !found || ns != t.o.Namespace || key == "" {
		return "", false
	}
	return key, true
}

// ownsPK reports whether pk is Namespace + "#" + a key, without building
// that string.
func (t *Table) ownsPK(pk string) bool {
	ns := t.o.Namespace
	return len(pk) > len(ns)+1 && pk[len(ns)] == '#' && pk[:len(ns)] == ns
}

// MaxValueBytes returns the largest value that fits in one item for key (key
// must be valid; see EncodeKey).
func (t *Table) MaxValueBytes(key string) int {
	return MaxItemBytes - (len(t.o.Namespace) + 1 + len(key)) - ItemOverheadBytes
}

// CheckValue returns a *ValueTooLargeError when value cannot fit in one item
// next to key (key must be valid): the check Put, Fill and Refresh make
// before any request, for callers that want it before their own gate (a
// circuit breaker).
func (t *Table) CheckValue(key string, value []byte) error { return t.checkValue(key, value) }

func (t *Table) checkValue(key string, value []byte) error {
	if max := t.MaxValueBytes(key); len(value) > max {
		return &ValueTooLargeError{Size: len(value), Max: max}
	}
	return nil
}

func validUTF8(s string) bool { return utf8.ValidString(s) }

func firstInvalid(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				return i
			}
		}
	}
	return len(s)
}

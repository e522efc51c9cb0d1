package fanout

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// FormatVersion is the highest version byte of the messages this package
// writes and reads. A pod refuses a message of a version it does not know
// (it counts it as lost: flush, no trust), so in a rolling upgrade that
// changes the format, upgrade the pods before the bridges. A message that
// uses nothing of version 2 (proofs, key hashes) is written as version 1,
// which pods of either version read.
const FormatVersion = 2

// Message flags.
const (
	flagFlush    = 1 << 0 // the bridge lost track of the stream: drop everything
	flagNoTrust  = 1 << 1 // the bridge has no watermark: WatermarkAge means nothing
	flagVersions = 1 << 2 // each key carries its version (the stream has NEW_IMAGE)
	flagProofs   = 1 << 3 // version 2: each key carries its write proof (8 bytes)
	flagHashes   = 1 << 4 // version 2: keys are 64-bit hashes (8 bytes each)

	v1Flags = flagFlush | flagNoTrust | flagVersions
	v2Flags = v1Flags | flagProofs | flagHashes
)

// ErrBadMessage is returned by DecodeMessage for a message it cannot read.
var ErrBadMessage = errors.New("fanout: undecodable message")

// Message is one batch published by the leading bridge; a heartbeat is a
// batch without keys.
type Message struct {
	// Epoch is the leader's lease epoch: it grows on every takeover.
	Epoch uint64
	// Seq numbers the messages of one epoch from 1, without gaps.
	Seq uint64
	// SentAt is when the message was published, in nanoseconds on the
	// bridge's own monotonic clock (its origin is arbitrary, fixed for the
	// epoch). Pods only compare SentAt values of one epoch with each other.
	SentAt int64
	// WatermarkAge is the watermark's age at SentAt: every change made
	// before SentAt-WatermarkAge is in this message or an earlier one of the
	// epoch. Meaningless when NoTrust.
	WatermarkAge int64
	// NoTrust: the bridge has no watermark (its stream consumer withdrew
	// trust): pods must not trust their L1 on this message.
	NoTrust bool
	// Flush: the bridge may have missed changes: pods drop everything, then
	// apply Keys.
	Flush bool
	// Keys are the partition key values (as in the table) that changed.
	Keys []string
	// Hashes, when not nil, replaces Keys: l2.PartitionKeyHash of each
	// changed partition key value (BridgeOptions.KeyHashes). Versions and
	// Proofs then go index by index with Hashes.
	Hashes []uint64
	// Versions, when not nil, holds each key's version from the stream's
	// NEW_IMAGE (0: unknown or removed), index by index with Keys.
	Versions []int64
	// Proofs, when not nil (with Versions), holds each key's write proof
	// from the NEW_IMAGE (l2.Item.Proof: the writer mark, value hash and
	// not-found flag; 0: unmarked), index by index with Keys.
	Proofs []uint64
}

// n is the number of changed items m names.
func (m *Message) n() int {
	if m.Hashes != nil {
		return len(m.Hashes)
	}
	return len(m.Keys)
}

// AppendMessage appends m's encoding to b: a version byte, a flags byte,
// uvarints epoch, seq, SentAt, WatermarkAge and the key count, then for each
// key: the key as a uvarint length and its bytes (or, with Hashes, its hash
// as 8 little-endian bytes), its version as a varint when Versions is set,
// and its proof as 8 little-endian bytes when Proofs is set (with Versions).
func AppendMessage(b []byte, m *Message) []byte {
	var flags byte
	if m.Flush {
		flags |= flagFlush
	}
	if m.NoTrust {
		flags |= flagNoTrust
	}
	if m.Versions != nil {
		flags |= flagVersions
		if m.Proofs != nil {
			flags |= flagProofs
		}
	}
	if m.Hashes != nil {
		flags |= flagHashes
	}
	version := byte(1)
	if flags&^v1Flags != 0 {
		version = 2
	}
	n := m.n()
	b = append(b, version, flags)
	b = binary.AppendUvarint(b, m.Epoch)
	b = binary.AppendUvarint(b, m.Seq)
	b = binary.AppendUvarint(b, uint64(max(m.SentAt, 0)))
	b = binary.AppendUvarint(b, uint64(max(m.WatermarkAge, 0)))
	b = binary.AppendUvarint(b, uint64(n))
	for i := range n {
		if m.Hashes != nil {
			b = binary.LittleEndian.AppendUint64(b, m.Hashes[i])
		} else {
			b = binary.AppendUvarint(b, uint64(len(m.Keys[i])))
			b = append(b, m.Keys[i]...)
		}
		if flags&flagVersions != 0 {
			b = binary.AppendVarint(b, at(m.Versions, i))
		}
		if flags&flagProofs != 0 {
			b = binary.LittleEndian.AppendUint64(b, uint64(at(m.Proofs, i)))
		}
	}
	return b
}

// at is s[i], or 0 past its end.
func at[T int64 | uint64](s []T, i int) T {
	if i < len(s) {
		return s[i]
	}
	return 0
}

// DecodeMessage reads a message AppendMessage wrote. It fails with an error
// wrapping ErrBadMessage on a truncated or malformed message, or one of a
// version above FormatVersion (or flags its version does not have).
func DecodeMessage(b []byte) (*Message, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadMessage, len(b))
	}
	if b[0] < 1 || b[0] > FormatVersion {
		return nil, fmt.Errorf("%w: format version %d, this pod reads 1 to %d", ErrBadMessage, b[0], FormatVersion)
	}
	flags := b[1]
	if known := map[byte]byte{1: v1Flags, 2: v2Flags}[b[0]]; flags&^known != 0 || flags&flagProofs != 0 && flags&flagVersions == 0 {
		return nil, fmt.Errorf("%w: flags %#x in a version %d message", ErrBadMessage, flags, b[0])
	}
	r := reader{b: b[2:]}
	m := &Message{Flush: flags&flagFlush != 0, NoTrust: flags&flagNoTrust != 0}
	m.Epoch = r.uvarint()
	m.Seq = r.uvarint()
	m.SentAt = int64(r.uvarint())
	m.WatermarkAge = int64(r.uvarint())
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)) { // every key takes at least one byte
		r.err = errors.New("key count exceeds the message")
	}
	if r.err == nil {
		if flags&flagHashes != 0 {
			m.Hashes = make([]uint64, 0, n)
		} else {
			m.Keys = make([]string, 0, n)
		}
		if flags&flagVersions != 0 {
			m.Versions = make([]int64, 0, n)
		}
		if flags&flagProofs != 0 {
			m.Proofs = make([]uint64, 0, n)
		}
	}
	for i := uint64(0); r.err == nil && i < n; i++ {
		if m.Hashes != nil {
			m.Hashes = append(m.Hashes, r.fixed64())
		} else {
			l := r.uvarint()
			if r.err == nil && l > uint64(len(r.b)) {
				r.err = errors.New("key length exceeds the message")
				break
			}
			m.Keys = append(m.Keys, string(r.b[:l]))
			r.b = r.b[l:]
		}
		if m.Versions != nil {
			m.Versions = append(m.Versions, r.varint())
		}
		if m.Proofs != nil {
			m.Proofs = append(m.Proofs, r.fixed64())
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadMessage, r.err)
	}
	return m, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("bad uvarint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) fixed64() uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.err = errors.New("truncated 64-bit field")
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

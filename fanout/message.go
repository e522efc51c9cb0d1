package fanout

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// FormatVersion is the version byte of the messages this package writes.
// A pod refuses a message of a version it does not know (it counts it as
// lost: flush, no trust), so in a rolling upgrade that changes the format,
// upgrade the pods before the bridges.
const FormatVersion = 1

// Message flags.
const (
	flagFlush    = 1 << 0 // the bridge lost track of the stream: drop everything
	flagNoTrust  = 1 << 1 // the bridge has no watermark: WatermarkAge means nothing
	flagVersions = 1 << 2 // each key carries its version (the stream has NEW_IMAGE)
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
	// Versions, when not nil, holds each key's version from the stream's
	// NEW_IMAGE (0: unknown or removed), index by index with Keys.
	Versions []int64
}

// AppendMessage appends m's encoding to b: a version byte, a flags byte,
// uvarints epoch, seq, SentAt, WatermarkAge and the key count, then each key
// as a uvarint length and its bytes, followed by its version as a varint when
// Versions is set.
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
	}
	b = append(b, FormatVersion, flags)
	b = binary.AppendUvarint(b, m.Epoch)
	b = binary.AppendUvarint(b, m.Seq)
	b = binary.AppendUvarint(b, uint64(max(m.SentAt, 0)))
	b = binary.AppendUvarint(b, uint64(max(m.WatermarkAge, 0)))
	b = binary.AppendUvarint(b, uint64(len(m.Keys)))
	for i, k := range m.Keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		if m.Versions != nil {
			var v int64
			if i < len(m.Versions) {
				v = m.Versions[i]
			}
			b = binary.AppendVarint(b, v)
		}
	}
	return b
}

// DecodeMessage reads a message AppendMessage wrote. It fails with an error
// wrapping ErrBadMessage on a truncated or malformed message, or one of
// another FormatVersion.
func DecodeMessage(b []byte) (*Message, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadMessage, len(b))
	}
	if b[0] != FormatVersion {
		return nil, fmt.Errorf("%w: format version %d, this pod reads %d", ErrBadMessage, b[0], FormatVersion)
	}
	flags := b[1]
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
		m.Keys = make([]string, 0, n)
		if flags&flagVersions != 0 {
			m.Versions = make([]int64, 0, n)
		}
	}
	for i := uint64(0); r.err == nil && i < n; i++ {
		l := r.uvarint()
		if r.err == nil && l > uint64(len(r.b)) {
			r.err = errors.New("key length exceeds the message")
			break
		}
		m.Keys = append(m.Keys, string(r.b[:l]))
		r.b = r.b[l:]
		if m.Versions != nil {
			m.Versions = append(m.Versions, r.varint())
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

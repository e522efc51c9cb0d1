package fanout_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/tieredcache/tieredcache/fanout"
)

func TestMessageRoundTripAndRefusals(t *testing.T) {
	for _, m := range []fanout.Message{
		{Epoch: 3, Seq: 1, SentAt: 123456789, WatermarkAge: 42_000_000, Keys: []string{}},
		{Epoch: 1 << 40, Seq: 99, SentAt: 1, NoTrust: true, Flush: true, Keys: []string{"#a", "ns#b", ""}},
		{Epoch: 2, Seq: 7, Keys: []string{"#x", "#y"}, Versions: []int64{5, 0}},
		{Epoch: 2, Seq: 8, Keys: []string{"#x", "#y"}, Versions: []int64{5, -1}, Proofs: []uint64{1 << 63, 0}},
		{Epoch: 2, Seq: 9, Hashes: []uint64{0, 1<<64 - 1}},
		{Epoch: 2, Seq: 10, Hashes: []uint64{7}, Versions: []int64{3}, Proofs: []uint64{9}},
	} {
		b := fanout.AppendMessage(nil, &m)
		got, err := fanout.DecodeMessage(b)
		if err != nil {
			t.Fatalf("decode %+v: %v", m, err)
		}
		if !reflect.DeepEqual(*got, m) {
			t.Fatalf("round trip: got %+v, want %+v", *got, m)
		}
		for i := range len(b) { // every truncation is refused
			if _, err := fanout.DecodeMessage(b[:i]); !errors.Is(err, fanout.ErrBadMessage) {
				t.Fatalf("truncated to %d bytes: err %v, want ErrBadMessage", i, err)
			}
		}
		// Version 1 unless a version-2 feature is used, so pods of the
		// first format read what needs nothing more.
		v2 := m.Proofs != nil || m.Hashes != nil
		if want := map[bool]byte{false: 1, true: 2}[v2]; b[0] != want {
			t.Fatalf("message %+v written as version %d, want %d", m, b[0], want)
		}
		if v2 {
			v1 := append([]byte{1}, b[1:]...)
			if _, err := fanout.DecodeMessage(v1); !errors.Is(err, fanout.ErrBadMessage) {
				t.Fatalf("version-2 flags accepted in a version-1 message: %v", err)
			}
		}
		other := append([]byte{fanout.FormatVersion + 1}, b[1:]...)
		if _, err := fanout.DecodeMessage(other); !errors.Is(err, fanout.ErrBadMessage) {
			t.Fatalf("unknown version accepted: %v", err)
		}
	}
}

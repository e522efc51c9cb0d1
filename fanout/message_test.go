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
		other := append([]byte{fanout.FormatVersion + 1}, b[1:]...)
		if _, err := fanout.DecodeMessage(other); !errors.Is(err, fanout.ErrBadMessage) {
			t.Fatalf("unknown version accepted: %v", err)
		}
	}
}

package compress_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tieredcache/tieredcache/compress"
	"github.com/tieredcache/tieredcache/tiered"
)

// itemOverhead estimates the bytes an l2 item holds besides its value:
// attribute names (pk, v, ver, exp) and values other than v, for a 20-byte
// namespaced key. DynamoDB sizes an item as the sum of its attribute names and
// values.
const itemOverhead = 2 + 20 + 1 + 3 + 3 + 5 + 6

// readUnits is what one strongly consistent GetItem of an item of n value
// bytes costs: 1 RCU per 4 KB (an eventually consistent read costs half).
func readUnits(n int) float64 { return float64((n + itemOverhead + 4095) / 4096) }

// writeUnits is what one write (UpdateItem) of such an item costs: 1 WCU per
// 1 KB.
func writeUnits(n int) float64 { return float64((n + itemOverhead + 1023) / 1024) }

var sizes = []int{1 << 10, 2 << 10, 10 << 10, 100 << 10} // 2 KB: the README's worked example

type alg struct {
	name string
	o    compress.Options
}

var algs = []alg{{"zstd", compress.Options{Algorithm: compress.Zstd}}, {"s2", compress.Options{Algorithm: compress.S2}}}

// BenchmarkWrite measures what compressing costs per write (or per fill: a
// miss that loads writes its value to L2), on top of the JSON encoding it
// already pays, and reports the item's write units with and without it.
//
//	stored-B    bytes of v in the item
//	WCU/write   write units of the compressed item; WCU-raw/write without
func BenchmarkWrite(b *testing.B) {
	for _, size := range sizes {
		v := realisticJSON(size, uint64(size))
		raw, _ := json.Marshal(v)
		for _, a := range algs {
			b.Run(fmt.Sprintf("%dKB/%s", size>>10, a.name), func(b *testing.B) {
				c, err := compress.Wrap[[]byte](tiered.BytesCodec{}, a.o) // compression only: raw is the JSON
				if err != nil {
					b.Fatal(err)
				}
				var stored []byte
				b.SetBytes(int64(len(raw)))
				b.ReportAllocs()
				for b.Loop() {
					stored, _ = c.Encode(raw)
				}
				b.ReportMetric(float64(len(stored)), "stored-B")
				b.ReportMetric(writeUnits(len(stored)), "WCU/write")
				b.ReportMetric(writeUnits(len(raw)), "WCU-raw/write")
			})
		}
	}
}

// BenchmarkMiss measures what decompressing costs per L2 read that reaches
// the codec (an L1 miss answered by L2), and reports the read units of a
// strongly consistent GetItem with and without compression. The "json"
// sub-benchmark is the JSON decoding every miss pays anyway, for scale (and
// a GetItem is about 1 ms on DynamoDB Local, a few ms on AWS).
//
//	ns/op       added by decompression per miss
//	RCU/miss    read units of the compressed item; RCU-raw/miss without
func BenchmarkMiss(b *testing.B) {
	for _, size := range sizes {
		v := realisticJSON(size, uint64(size))
		raw, _ := json.Marshal(v)
		b.Run(fmt.Sprintf("%dKB/json", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := (tiered.JSONCodec[Page]{}).Decode(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, a := range algs {
			b.Run(fmt.Sprintf("%dKB/%s", size>>10, a.name), func(b *testing.B) {
				c, err := compress.Wrap[[]byte](tiered.BytesCodec{}, a.o)
				if err != nil {
					b.Fatal(err)
				}
				stored, _ := c.Encode(raw)
				b.SetBytes(int64(len(raw)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.Decode(stored); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(readUnits(len(stored)), "RCU/miss")
				b.ReportMetric(readUnits(len(raw)), "RCU-raw/miss")
			})
		}
	}
}

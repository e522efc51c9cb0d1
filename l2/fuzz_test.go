package l2

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

// Fuzz targets for what l2 decodes from outside: keys, and items from
// GetItem, BatchGetItem and stream images. `make fuzz` runs each for
// FUZZTIME; testdata/fuzz holds the seed corpus (and any crasher found, which
// then runs as a regression test with every `go test`).

// fuzzAPI stands in for a client: nothing here makes a request.
type fuzzAPI struct{ API }

func fuzzTable(t *testing.T, ns string) *Table {
	tbl, err := New(Options{Client: fuzzAPI{}, Table: "tbl", Namespace: ns})
	if err != nil {
		var oe *OptionsError
		if !errors.As(err, &oe) || !errors.Is(err, ErrInvalidOptions) {
			t.Fatalf("New(namespace %q) = %v; want *OptionsError", ns, err)
		}
		return nil
	}
	return tbl
}

// FuzzKeyRoundTrip: EncodeKey accepts exactly the valid keys, DecodeKey
// inverts it, and DecodeKey accepts only what EncodeKey produces.
func FuzzKeyRoundTrip(f *testing.F) {
	f.Add("ns", "key", "ns#key")
	f.Add("", "a#b", "#a#b")
	f.Add("n", "\xff", "x#y")
	f.Add("ns", strings.Repeat("k", 2046), "other#k")
	f.Fuzz(func(t *testing.T, ns, key, pk string) {
		tbl := fuzzTable(t, ns)
		if tbl == nil {
			return
		}
		enc, err := tbl.EncodeKey(key)
		valid := key != "" && utf8.ValidString(key) && len(ns)+1+len(key) <= MaxPartitionKeyBytes
		switch {
		case valid && err != nil:
			t.Fatalf("EncodeKey(%q) = %v; want it accepted", key, err)
		case !valid && err == nil:
			t.Fatalf("EncodeKey(%q) accepted an invalid key", key)
		case !valid && !errors.Is(err, ErrEmptyKey) && !errors.Is(err, ErrInvalidKey) && !errors.Is(err, ErrKeyTooLong):
			t.Fatalf("EncodeKey(%q) = %v; want a typed key error", key, err)
		}
		if valid {
			if got, ok := tbl.DecodeKey(enc); !ok || got != key {
				t.Fatalf("DecodeKey(EncodeKey(%q)) = %q, %v", key, got, ok)
			}
		}
		if k, ok := tbl.DecodeKey(pk); ok {
			if again, err := tbl.EncodeKey(k); err == nil && again != pk {
				t.Fatalf("DecodeKey(%q) = %q, which encodes to %q", pk, k, again)
			}
		}
	})
}

var fuzzNames = []string{PartitionKeyAttr, ValueAttr, VersionAttr, ExpiresAttr, NegativeAttr, TombstoneAttr,
	LeaseAttr, LeaseExpiresAttr, flagsAttr, "other"}

// attrs decodes fuzz bytes into the same item twice, as a table item and as
// a stream image: records of [name][kind][length][payload]. The partition
// key, when the input names none, is "ns#k".
func attrs(data []byte) (map[string]types.AttributeValue, map[string]streamtypes.AttributeValue) {
	tm, sm := map[string]types.AttributeValue{}, map[string]streamtypes.AttributeValue{}
	for len(data) >= 3 {
		name := fuzzNames[int(data[0])%len(fuzzNames)]
		kind, n := data[1]%11, min(int(data[2]), len(data)-3)
		payload := data[3 : 3+n]
		data = data[3+n:]
		tv, sv := value(kind, payload, 0)
		tm[name], sm[name] = tv, sv
	}
	if _, ok := tm[PartitionKeyAttr]; !ok && len(tm) > 0 {
		tm[PartitionKeyAttr] = &types.AttributeValueMemberS{Value: "ns#k"}
		sm[PartitionKeyAttr] = &streamtypes.AttributeValueMemberS{Value: "ns#k"}
	}
	return tm, sm
}

func value(kind byte, p []byte, depth int) (types.AttributeValue, streamtypes.AttributeValue) {
	s := string(p)
	switch kind {
	case 0:
		return &types.AttributeValueMemberS{Value: s}, &streamtypes.AttributeValueMemberS{Value: s}
	case 1:
		return &types.AttributeValueMemberN{Value: s}, &streamtypes.AttributeValueMemberN{Value: s}
	case 2:
		return &types.AttributeValueMemberB{Value: p}, &streamtypes.AttributeValueMemberB{Value: p}
	case 3:
		b := len(p) > 0 && p[0]&1 == 1
		return &types.AttributeValueMemberBOOL{Value: b}, &streamtypes.AttributeValueMemberBOOL{Value: b}
	case 4:
		return &types.AttributeValueMemberNULL{Value: true}, &streamtypes.AttributeValueMemberNULL{Value: true}
	case 5:
		return &types.AttributeValueMemberSS{Value: []string{s}}, &streamtypes.AttributeValueMemberSS{Value: []string{s}}
	case 6:
		return &types.AttributeValueMemberNS{Value: []string{s}}, &streamtypes.AttributeValueMemberNS{Value: []string{s}}
	case 7:
		return &types.AttributeValueMemberBS{Value: [][]byte{p}}, &streamtypes.AttributeValueMemberBS{Value: [][]byte{p}}
	case 8, 9:
		if depth > 2 || len(p) == 0 {
			return nil, nil // a nil AttributeValue, as a buggy caller might pass
		}
		tv, sv := value(p[0]%11, p[1:], depth+1)
		if kind == 8 {
			return &types.AttributeValueMemberL{Value: []types.AttributeValue{tv}},
				&streamtypes.AttributeValueMemberL{Value: []streamtypes.AttributeValue{sv}}
		}
		return &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"x": tv}},
			&streamtypes.AttributeValueMemberM{Value: map[string]streamtypes.AttributeValue{"x": sv}}
	}
	return nil, nil
}

// checkItem holds for every Item l2 returns as an entry.
func checkItem(t *testing.T, how string, it Item) {
	if it.Key == "" {
		t.Fatalf("%s: an item without a key: %+v", how, it)
	}
	if it.Version < 0 {
		t.Fatalf("%s: negative version: %+v", how, it)
	}
	if !it.Vacant && !it.NotFound && it.Value == nil {
		t.Fatalf("%s: a value entry with a nil value: %+v", how, it)
	}
}

// FuzzItemDecoding: Get's, BatchGet's and the stream's decoding of any item
// never panic, and give an Item or an ErrCorruptItem (Get: or ErrNotFound;
// BatchGet: a skipped key), each corrupt item counted exactly once.
func FuzzItemDecoding(f *testing.F) {
	f.Add([]byte("\x00\x00\x05ns#k1\x01\x00\x01\x02\x01\x02\x01\x01"))  // v "1"? ver "\x01"
	f.Add([]byte("\x01\x02\x03abc\x02\x01\x017"))                       // v B, ver 7
	f.Add([]byte("\x02\x00\x017\x01\x02\x01x"))                         // ver as S
	f.Add([]byte("\x04\x03\x01\x01\x02\x01\x013"))                      // neg true, ver 3
	f.Add([]byte("\x05\x03\x01\x01\x06\x00\x01o\x07\x01\x0299"))        // tomb, lease, lexp
	f.Add([]byte("\x01\x08\x03\x00ab\x02\x01\x041e30"))                 // v as L, ver 1e30
	f.Add([]byte("\x01\x02\x01x\x02\x01\x031.5\x03\x01\x0a9999999999")) // ver 1.5
	f.Add([]byte("\x00\x01\x011\x01\x02\x01x"))                         // pk as N
	f.Add([]byte("\x00\x00\x02ns\x01\x02\x01x\x02\x01\x011"))           // pk without '#'
	f.Add([]byte("\x01\x09\x02\x04\x00\x02\x01\x02-1\x03\x01\x01\x00")) // v as M, ver -1
	f.Fuzz(func(t *testing.T, data []byte) {
		tbl := fuzzTable(t, "ns")
		tm, sm := attrs(data)
		now := time.Unix(1_700_000_000, 0)

		before := tbl.Stats().CorruptItems
		it, err := tbl.getResult(tm, now)
		corrupt := errors.Is(err, ErrCorruptItem)
		switch {
		case err == nil:
			checkItem(t, "Get", it)
		case corrupt:
			var ce *CorruptItemError
			if !errors.As(err, &ce) || ce.Attr == "" {
				t.Fatalf("Get: %v is not a *CorruptItemError", err)
			}
		case !errors.Is(err, ErrNotFound):
			t.Fatalf("Get: %v; want an Item, ErrNotFound or ErrCorruptItem", err)
		}
		if got := tbl.Stats().CorruptItems - before; got != b2i(corrupt) {
			t.Fatalf("Get counted %d corrupt items for one read (corrupt: %v)", got, corrupt)
		}

		for _, vacant := range []bool{false, true} {
			found := map[string]Item{}
			var reported int
			bo := &batchGetOptions{vacant: vacant, onCorrupt: func(string, error) { reported++ }}
			before := tbl.Stats().CorruptItems
			tbl.batchItem(tm, now, bo, found)
			counted := tbl.Stats().CorruptItems - before
			if counted != b2i(corrupt) || len(tm) > 0 && reported > 1 {
				t.Fatalf("BatchGet counted %d, reported %d corrupt; Get said corrupt: %v", counted, reported, corrupt)
			}
			if corrupt && len(found) != 0 {
				t.Fatalf("BatchGet returned a corrupt item: %+v", found)
			}
			for _, bit := range found {
				checkItem(t, "BatchGet", bit)
				if err == nil && !vacant && (bit.Version != it.Version || string(bit.Value) != string(it.Value)) {
					t.Fatalf("BatchGet %+v and Get %+v disagree", bit, it)
				}
			}
		}

		sit, serr := ItemFromStreamImage(sm)
		switch {
		case serr == nil:
			checkItem(t, "stream", sit)
		case !errors.Is(serr, ErrCorruptItem):
			t.Fatalf("stream: %v; want an Item or ErrCorruptItem", serr)
		}
		if len(tm) > 0 && (serr != nil) != corrupt {
			t.Fatalf("stream image corrupt: %v, table item corrupt: %v (%v / %v)", serr != nil, corrupt, serr, err)
		}
	})
}

// FuzzOptions: New never panics, and refuses bad options with an
// *OptionsError naming the field.
func FuzzOptions(f *testing.F) {
	f.Add("tbl", "ns", int64(0), int64(0), 0, int64(0), int64(0), "KEYS_ONLY")
	f.Add("ab", "a#b", int64(-1), int64(-1), -1, int64(-1), int64(-1), "ALL")
	f.Add("tbl", "", int64(0), int64(1<<62), 0, int64(0), int64(0), "")
	f.Fuzz(func(t *testing.T, table, ns string, tomb, call int64, retries int, backoff, maxWait int64, view string) {
		tbl, err := New(Options{Client: fuzzAPI{}, Table: table, Namespace: ns, TombstoneTTL: time.Duration(tomb),
			CallTimeout: time.Duration(call), BatchRetries: retries, BatchBackoff: time.Duration(backoff),
			BatchMaxWait: time.Duration(maxWait), StreamView: types.StreamViewType(view)})
		var oe *OptionsError
		switch {
		case err == nil && tbl == nil:
			t.Fatal("New returned neither a Table nor an error")
		case err != nil && (!errors.As(err, &oe) || oe.Field == "" || !errors.Is(err, ErrInvalidOptions)):
			t.Fatalf("New = %v; want an *OptionsError naming the field", err)
		case err == nil && tbl.o.CallTimeout > 0:
			// Deadlines derived from CallTimeout never wrap negative.
			if tbl.batchFirst(MaxBatchKeys) < tbl.o.CallTimeout || mulSat(tbl.o.CallTimeout, HardTimeoutFactor) < tbl.o.CallTimeout {
				t.Fatalf("CallTimeout %v: derived deadlines overflow", tbl.o.CallTimeout)
			}
		}
	})
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

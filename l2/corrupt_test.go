package l2_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/l2"
)

// corruptShapes are items a foreign writer (or a bug) may leave under the
// cache's namespace, written with the raw SDK. Each breaks the item format in
// one way.
func corruptShapes() map[string]map[string]types.AttributeValue {
	future := N(time.Now().Add(time.Hour).Unix())
	futureMs := N(time.Now().Add(time.Hour).UnixMilli())
	return map[string]map[string]types.AttributeValue{
		"ver-string":   {"v": B("x"), "ver": S("7")},
		"no-ver":       {"v": B("x"), "exp": future},
		"neg-no-ver":   {"neg": &types.AttributeValueMemberBOOL{Value: true}},
		"ver-decimal":  {"v": B("x"), "ver": &types.AttributeValueMemberN{Value: "1.5"}},
		"ver-huge":     {"v": B("x"), "ver": &types.AttributeValueMemberN{Value: "1e30"}},
		"ver-negative": {"v": B("x"), "ver": N(-3)},
		"v-string":     {"v": S("not bytes"), "ver": N(4)},
		"v-map":        {"v": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"a": N(1)}}, "ver": N(4)},
		"exp-string":   {"v": B("x"), "ver": N(4), "exp": S("tomorrow")},
		"neg-string":   {"neg": S("yes"), "ver": N(4), "exp": future},
		"tomb-number":  {"tomb": N(1), "ver": N(4)},
		"v-and-neg":    {"v": B("x"), "neg": &types.AttributeValueMemberBOOL{Value: true}, "ver": N(4)},
		"lease-number": {"lease": N(5), "lexp": futureMs, "tomb": &types.AttributeValueMemberBOOL{Value: true}},
		"lexp-string":  {"lease": S("someone"), "lexp": S("soon"), "tomb": &types.AttributeValueMemberBOOL{Value: true}},
		"lease-alone":  {"lease": S("someone")},
	}
}

func (e *env) putCorrupt(t *testing.T, key string, item map[string]types.AttributeValue) {
	t.Helper()
	m := make(map[string]types.AttributeValue, len(item)+1)
	for k, v := range item {
		m[k] = v
	}
	m["pk"] = S("ns#" + key)
	e.putRaw(t, m)
}

// TestWritesReplaceCorruptItems: every write over every corrupt shape
// succeeds (Put, PutNotFound, Delete) or behaves as over a vacant item (Fill,
// AcquireLeaseAt + Fill, Refresh at version 0), never with a
// ValidationException, and leaves a well-formed item whose version is above
// any counter version.
func TestWritesReplaceCorruptItems(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	ops := map[string]func(key string) (int64, error){
		"Put": func(k string) (int64, error) { return e.tbl.Put(c, k, []byte("new"), time.Minute) },
		"PutNotFound": func(k string) (int64, error) {
			return e.tbl.PutNotFound(c, k, time.Minute)
		},
		"Delete": func(k string) (int64, error) {
			if err := e.tbl.Delete(c, k); err != nil {
				return 0, err
			}
			it, err := e.tbl.Get(c, k)
			if !errors.Is(err, l2.ErrNotFound) {
				return 0, errors.New("after Delete: Get = " + errString(err))
			}
			return it.Version, nil
		},
		"Fill": func(k string) (int64, error) {
			return e.tbl.Fill(c, k, []byte("new"), false, time.Minute, "")
		},
		"FillIfVersion0": func(k string) (int64, error) {
			return e.tbl.Fill(c, k, []byte("new"), false, time.Minute, "", l2.IfVersion(0))
		},
		"Refresh0": func(k string) (int64, error) {
			return e.tbl.Refresh(c, k, []byte("new"), false, time.Minute, 0)
		},
		"LeaseAndFill": func(k string) (int64, error) {
			// The lease (in the lease item) leaves the corrupt item as it
			// is; the lease's fill replaces it, as a fill at version 0.
			res, err := e.tbl.AcquireLeaseAt(c, k, 0, "me", 10*time.Second)
			if err != nil {
				return 0, err
			}
			if !res.Acquired {
				return 0, errors.New("lease not acquired")
			}
			return e.tbl.Fill(c, k, []byte("new"), false, time.Minute, "me", l2.IfVersion(0))
		},
	}
	floor := time.Now().UnixMicro()
	for opName, op := range ops {
		for shape, item := range corruptShapes() {
			if opName == "Refresh0" && (shape == "v-string" || shape == "v-map" || shape == "exp-string" ||
				shape == "neg-string" || shape == "tomb-number" || shape == "v-and-neg") {
				continue // they carry version 4: Refresh at 0 must conflict (below)
			}
			key := opName + "/" + shape
			e.putCorrupt(t, key, item)
			ver, err := op(key)
			if err != nil {
				var re *l2.RequestError
				if errors.As(err, &re) {
					t.Logf("detail: %v", re.Err)
				}
				t.Errorf("%s over %s: %v", opName, shape, err)
				continue
			}
			if ver < floor {
				t.Errorf("%s over %s: version %d, want above the counter range (>= %d)", opName, shape, ver, floor)
			}
			if opName == "Delete" {
				continue
			}
			it, err := e.tbl.Get(c, key)
			switch {
			case opName == "PutNotFound" && (err != nil || !it.NotFound):
				t.Errorf("%s over %s: Get = %+v, %v", opName, shape, it, err)
			case opName != "PutNotFound" && (err != nil || string(it.Value) != "new" || it.Version != ver):
				t.Errorf("%s over %s: Get = %+v, %v; want new at %d", opName, shape, it, err, ver)
			}
			// Later writes go on from the repaired version.
			if next, err := e.tbl.Put(c, key, []byte("next"), time.Minute); err != nil || next != ver+1 {
				t.Errorf("%s over %s: next Put = %d, %v; want %d", opName, shape, next, err, ver+1)
			}
		}
	}
	if st := e.tbl.Stats(); st.Repairs == 0 || st.CorruptItems != 0 {
		t.Errorf("Stats = %+v; want Repairs counted, and no reads counted as corrupt", st)
	}

	// Refresh over a corrupt item carrying another version than the
	// caller's is refused cleanly, and leaves it.
	e.putCorrupt(t, "refresh", corruptShapes()["v-string"])
	if _, err := e.tbl.Refresh(c, "refresh", []byte("new"), false, time.Minute, 0); !errors.Is(err, l2.ErrConflict) {
		t.Errorf("Refresh(0) over a corrupt item at version 4 = %v; want ErrConflict", err)
	}
	if ver, err := e.tbl.Refresh(c, "refresh", []byte("new"), false, time.Minute, 4); err != nil || ver < floor {
		t.Errorf("Refresh(4) over a corrupt item at version 4 = %d, %v; want it replaced", ver, err)
	}
}

// TestCorruptItemWithLiveLease: a corrupt item that still carries a readable
// live lease of format 1 (an older release's, on the key's item) is not
// taken from its holder: fills with and without a lease are refused cleanly,
// with the holder's expiry; once that lease has expired a fill replaces it.
func TestCorruptItemWithLiveLease(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	exp := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	e.putCorrupt(t, "k", map[string]types.AttributeValue{
		"lease": S("holder"), "lexp": N(exp.UnixMilli()), "v": S("bad"), "ver": N(2),
	})
	var ce *l2.ConflictError
	if _, err := e.tbl.Fill(c, "k", []byte("x"), false, time.Minute, ""); !errors.As(err, &ce) || !ce.HolderExpires.Equal(exp) {
		t.Fatalf("lease-less Fill = %v; want a conflict naming the holder", err)
	}
	ce = nil
	if _, err := e.tbl.Fill(c, "k", []byte("x"), false, time.Minute, "other", l2.IfVersion(2)); !errors.Is(err, l2.ErrLeaseLost) ||
		!errors.As(err, &ce) || !ce.HolderExpires.Equal(exp) {
		t.Fatalf("Fill with another lease = %v; want ErrLeaseLost naming the holder", err)
	}
	e.putCorrupt(t, "k", map[string]types.AttributeValue{
		"lease": S("holder"), "lexp": N(time.Now().Add(-time.Second).UnixMilli()), "v": S("bad"), "ver": N(2),
	})
	ver, err := e.tbl.Fill(c, "k", []byte("after"), false, time.Minute, "other", l2.IfVersion(2))
	if err != nil {
		t.Fatalf("Fill once the lease expired = %v", err)
	}
	if it := mustGet(t, e.tbl, "k"); string(it.Value) != "after" || it.Version != ver {
		t.Fatalf("Get = %+v; want the fill at %d", it, ver)
	}
}

// raceAPI runs hook once, right after the first UpdateItem that a condition
// refused: another node's write landing between a write meeting a corrupt
// item and its repair.
type raceAPI struct {
	l2.API
	once sync.Once
	hook func()
}

func (r *raceAPI) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	out, err := r.API.UpdateItem(ctx, in, optFns...)
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		r.once.Do(r.hook)
	}
	return out, err
}

// TestRepairDoesNotOverwriteANewerWrite: a repair is conditioned on the item
// being still the corrupt one the write saw. When another node replaced it
// in between, a Fill conflicts with that node's entry, and a Put moves on
// from its version; neither overwrites it blindly.
func TestRepairDoesNotOverwriteANewerWrite(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	other := e.tbl // the other node: same table, plain client path
	var otherVer int64
	race := func(key string) *l2.Table {
		api := &raceAPI{API: e.opts.Client, hook: func() {
			var err error
			if otherVer, err = other.Put(c, key, []byte("other"), time.Minute); err != nil {
				t.Errorf("other node's Put: %v", err)
			}
		}}
		o := e.opts
		o.Client = api
		tbl, err := l2.New(o)
		if err != nil {
			t.Fatal(err)
		}
		return tbl
	}

	e.putCorrupt(t, "fill", corruptShapes()["ver-string"])
	_, err := race("fill").Fill(c, "fill", []byte("fill"), false, time.Minute, "", l2.IfVersion(0))
	var ce *l2.ConflictError
	if !errors.As(err, &ce) || ce.Current == nil || string(ce.Current.Value) != "other" || ce.Current.Version != otherVer {
		t.Fatalf("Fill racing another node's Put = %v; want a conflict with that Put's entry", err)
	}
	if it := mustGet(t, e.tbl, "fill"); string(it.Value) != "other" {
		t.Fatalf("after the race: %+v; want the other node's entry", it)
	}

	e.putCorrupt(t, "put", corruptShapes()["no-ver"])
	ver, err := race("put").Put(c, "put", []byte("mine"), time.Minute)
	if err != nil || ver != otherVer+1 {
		t.Fatalf("Put racing another node's Put = %d, %v; want %d (after it)", ver, err, otherVer+1)
	}
}

// TestCorruptReadsCountedOnce: Get and BatchGet count each corrupt item read
// exactly once, and BatchGet reports each through OnCorrupt once.
func TestCorruptReadsCountedOnce(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	shapes := corruptShapes()
	var keys []string
	for shape, item := range shapes {
		e.putCorrupt(t, shape, item)
		keys = append(keys, shape)
	}
	for _, k := range keys {
		before := e.tbl.Stats().CorruptItems
		if _, err := e.tbl.Get(c, k); !errors.Is(err, l2.ErrCorruptItem) {
			t.Errorf("Get(%s) = %v; want ErrCorruptItem", k, err)
		}
		want := int64(1)
		if got := e.tbl.Stats().CorruptItems - before; got != want {
			t.Errorf("Get(%s) counted %d corrupt items, want %d", k, got, want)
		}
	}
	if _, err := e.tbl.Put(c, "good", []byte("g"), time.Minute); err != nil {
		t.Fatal(err)
	}
	reported := map[string]int{}
	before := e.tbl.Stats().CorruptItems
	m, err := e.tbl.BatchGet(c, append(keys, "good", "absent"), l2.IncludeVacant(), l2.OnCorrupt(func(k string, err error) {
		if !errors.Is(err, l2.ErrCorruptItem) {
			t.Errorf("OnCorrupt(%s, %v): not ErrCorruptItem", k, err)
		}
		reported[k]++
	}))
	if err != nil || len(m) != 1 || string(m["good"].Value) != "g" {
		t.Fatalf("BatchGet = %v, %v; want only the good entry", m, err)
	}
	for _, k := range keys {
		if reported[k] != 1 {
			t.Errorf("OnCorrupt reported %s %d times, want once", k, reported[k])
		}
	}
	if len(reported) != len(keys) {
		t.Errorf("OnCorrupt reported %v; want exactly the corrupt keys", reported)
	}
	if got := e.tbl.Stats().CorruptItems - before; got != int64(len(keys)) {
		t.Errorf("BatchGet counted %d corrupt items, want %d", got, len(keys))
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

package l2_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/tieredcache/tieredcache/l2"
)

// TestLeaseLivesInASiblingItem: a lease is written to the key's lease item,
// never to the key's item (which would make a stream record evicting the
// key on every node); the lease item's partition key is never a key's, in
// any namespace, and carries the format version and a TTL attribute.
func TestLeaseLivesInASiblingItem(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	res, err := e.tbl.AcquireLeaseAt(c, "k", 0, "A", 10*time.Second)
	if err != nil || !res.Acquired {
		t.Fatalf("AcquireLeaseAt = %+v, %v", res, err)
	}
	if raw := e.getRaw(t, "ns#k"); raw != nil {
		t.Fatalf("the key's item was written by a lease: %v", raw)
	}
	lpk := e.tbl.LeasePartitionKey("k")
	raw := e.getRaw(t, lpk)
	want := map[string]string{"lease": "A", "lver": "0", "fv": "2"}
	for name, v := range want {
		var got string
		switch a := raw[name].(type) {
		case *types.AttributeValueMemberS:
			got = a.Value
		case *types.AttributeValueMemberN:
			got = a.Value
		}
		if got != v {
			t.Errorf("lease item %s = %v, want %s", name, raw[name], v)
		}
	}
	if lexp, ok := raw["lexp"].(*types.AttributeValueMemberN); !ok || lexp.Value != N(res.Expires.UnixMilli()).Value {
		t.Errorf("lease item lexp = %v, want %d", raw["lexp"], res.Expires.UnixMilli())
	}
	if exp, ok := raw["exp"].(*types.AttributeValueMemberN); !ok || (exp.Value != N(res.Expires.Unix()).Value && exp.Value != N(res.Expires.Unix()+1).Value) {
		t.Errorf("lease item exp (the TTL attribute) = %v, want the lease's expiry in seconds, rounded up", raw["exp"])
	}
	if _, ok := e.tbl.DecodeKey(lpk); ok || strings.Contains(lpk, "#") || !l2.IsLeasePartitionKey(lpk) || len(lpk) != 49 {
		t.Errorf("lease partition key %q: decodable or not recognised", lpk)
	}
	if l2.IsLeasePartitionKey("ns#lease!x") || l2.IsLeasePartitionKey("lease!x#y") {
		t.Error("a key's partition key taken for a lease item's")
	}
	// Namespaces sharing a table have their own lease items; the longest
	// key has one.
	other, err := l2.New(l2.Options{Client: e.opts.Client, Table: e.name, Namespace: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if other.LeasePartitionKey("k") == lpk {
		t.Error("two namespaces share a lease item")
	}
	long := strings.Repeat("x", l2.MaxPartitionKeyBytes-len("ns#"))
	if r, err := e.tbl.AcquireLeaseAt(c, long, 0, "A", time.Second); err != nil || !r.Acquired {
		t.Fatalf("AcquireLeaseAt of the longest key = %+v, %v", r, err)
	}
	// A stream image of the lease item is nothing a consumer keeps.
	img := map[string]streamtypes.AttributeValue{"pk": &streamtypes.AttributeValueMemberS{Value: lpk}}
	if _, err := l2.ItemFromStreamImage(img); !errors.Is(err, l2.ErrCorruptItem) {
		t.Errorf("ItemFromStreamImage(lease item) = %v, want a corrupt-item error", err)
	}

	// The fill writes the key's item once and leaves the lease item, voided
	// by the version it moved; a release leaves no lease in it.
	if v, err := e.tbl.Fill(c, "k", []byte("A's"), false, time.Minute, "A", l2.IfVersion(0)); err != nil || v != 1 {
		t.Fatalf("lease Fill = %d, %v", v, err)
	}
	if raw := e.getRaw(t, "ns#k"); raw["lease"] != nil || raw["lexp"] != nil || raw["tomb"] != nil {
		t.Errorf("the key's item after the fill: %v", raw)
	}
	if r, err := e.tbl.AcquireLeaseAt(c, "k2", 0, "B", time.Minute); err != nil || !r.Acquired {
		t.Fatalf("AcquireLeaseAt = %+v, %v", r, err)
	}
	if err := e.tbl.ReleaseLease(c, "k2", "B"); err != nil {
		t.Fatal(err)
	}
	if raw := e.getRaw(t, e.tbl.LeasePartitionKey("k2")); raw["lease"] != nil || raw["exp"] == nil {
		t.Errorf("released lease item = %v; want no lease, its exp kept for the sweeper", raw)
	}
	if raw := e.getRaw(t, "ns#k2"); raw != nil {
		t.Errorf("a lease and its release wrote the key's item: %v", raw)
	}
	// GetLeased is one BatchGetItem call.
	batches := e.inj.Calls("BatchGetItem")
	if _, err := e.tbl.GetLeased(c, "k2"); !errors.Is(err, l2.ErrNotFound) || e.inj.Calls("BatchGetItem") != batches+1 {
		t.Errorf("GetLeased = %v with %d BatchGetItem calls, want ErrNotFound with 1", err, e.inj.Calls("BatchGetItem")-batches)
	}
}

// The item format of the previous release (format 1) held the lease on the
// key's own item: a placeholder (tombstone + lease) written by AcquireLease,
// filled by an UpdateItem conditioned on the lease. During a rolling upgrade
// both releases share the table; these write format 1 exactly as that
// release did, with the raw SDK.

func oldLease(t *testing.T, e *env, key, owner string, expires time.Time, ver int64) {
	t.Helper()
	item := map[string]types.AttributeValue{
		"pk": S("ns#" + key), "tomb": &types.AttributeValueMemberBOOL{Value: true},
		"exp": N(time.Now().Add(time.Hour).Unix()), "lease": S(owner), "lexp": N(expires.UnixMilli()),
	}
	if ver > 0 {
		item["ver"] = N(ver)
	}
	e.putRaw(t, item)
}

func oldFill(t *testing.T, e *env, key, owner, value string) error {
	t.Helper()
	_, err := e.raw.UpdateItem(ctx(t), &dynamodb.UpdateItemInput{
		TableName:                aws.String(e.name),
		Key:                      map[string]types.AttributeValue{"pk": S("ns#" + key)},
		UpdateExpression:         aws.String("SET #v = :v, #exp = :exp REMOVE #neg, #tomb, #lease, #lexp ADD #ver :one"),
		ConditionExpression:      aws.String("#lease = :lease"),
		ExpressionAttributeNames: map[string]string{"#v": "v", "#exp": "exp", "#neg": "neg", "#tomb": "tomb", "#lease": "lease", "#lexp": "lexp", "#ver": "ver"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":v": B(value), ":exp": N(time.Now().Add(time.Minute).Unix()), ":one": N(1), ":lease": S(owner),
		},
	})
	return err
}

// TestFormat1LeasesAreHonoured: this release reads a live lease of format 1
// as the older release does (Get and GetLeased say Leased; fills of this
// release, with or without a lease of their own, do not land while it
// lives), and the older release's fill lands over it.
func TestFormat1LeasesAreHonoured(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	exp := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	oldLease(t, e, "k", "old-node", exp, 3)
	if it, err := e.tbl.Get(c, "k"); !errors.Is(err, l2.ErrNotFound) || !it.Leased || it.Version != 3 {
		t.Fatalf("Get of a format-1 lease = %+v, %v; want Leased at version 3", it, err)
	}
	if it, err := e.tbl.GetLeased(c, "k"); !errors.Is(err, l2.ErrNotFound) || !it.Leased || it.Version != 3 {
		t.Fatalf("GetLeased of a format-1 lease = %+v, %v", it, err)
	}
	var ce *l2.ConflictError
	if _, err := e.tbl.Fill(c, "k", []byte("new"), false, time.Minute, "", l2.IfVersion(3)); !errors.As(err, &ce) || !ce.HolderExpires.Equal(exp) {
		t.Fatalf("lease-less Fill over a format-1 lease = %v; want a conflict naming its expiry", err)
	}
	// A lease of this release does not see it, but its fill does.
	if r, err := e.tbl.AcquireLeaseAt(c, "k", 3, "new-node", time.Minute); err != nil || !r.Acquired {
		t.Fatalf("AcquireLeaseAt = %+v, %v", r, err)
	}
	if _, err := e.tbl.Fill(c, "k", []byte("new"), false, time.Minute, "new-node", l2.IfVersion(3)); !errors.Is(err, l2.ErrLeaseLost) {
		t.Fatalf("lease Fill over a format-1 lease = %v; want ErrLeaseLost", err)
	}
	if err := oldFill(t, e, "k", "old-node", "old's"); err != nil {
		t.Fatalf("the older release's fill: %v", err)
	}
	if it := mustGet(t, e.tbl, "k"); string(it.Value) != "old's" || it.Version != 4 || it.Leased {
		t.Fatalf("after the older release's fill: %+v", it)
	}
	// An expired format-1 lease holds no one; a Put or Delete removes a live one.
	oldLease(t, e, "gone", "old-node", time.Now().Add(-time.Second), 0)
	if it, err := e.tbl.GetLeased(c, "gone"); !errors.Is(err, l2.ErrNotFound) || it.Leased {
		t.Fatalf("GetLeased of an expired format-1 lease = %+v, %v", it, err)
	}
	if v, err := e.tbl.Fill(c, "gone", []byte("x"), false, time.Minute, "", l2.IfVersion(0)); err != nil || v != 1 {
		t.Fatalf("Fill over an expired format-1 lease = %d, %v", v, err)
	}
	oldLease(t, e, "put", "old-node", exp, 2)
	if _, err := e.tbl.Put(c, "put", []byte("p"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if raw := e.getRaw(t, "ns#put"); raw["lease"] != nil || raw["lexp"] != nil {
		t.Errorf("a Put left the format-1 lease: %v", raw)
	}
	if err := oldFill(t, e, "put", "old-node", "stale"); err == nil {
		t.Error("the older release's fill landed after a Put of this release")
	}
}

// TestLeaseOnASweptKeyIsVoid: a lease bound to version v > 0 of a key whose
// item the TTL sweeper has deleted since (the key reads as version 0) holds
// no one: the holder's fill, conditioned on v, can only lose. Waiters see
// no lease (GetLeased), and a caller that found no item takes it over.
func TestLeaseOnASweptKeyIsVoid(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	if _, err := e.tbl.Put(c, "k", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := e.tbl.Delete(c, "k"); err != nil {
		t.Fatal(err)
	}
	tomb, err := e.tbl.GetLeased(c, "k")
	if !errors.Is(err, l2.ErrNotFound) || tomb.Version == 0 {
		t.Fatalf("GetLeased after Delete = %+v, %v; want ErrNotFound with the tombstone's version", tomb, err)
	}
	if res, err := e.tbl.AcquireLeaseAt(c, "k", tomb.Version, "A", time.Minute); err != nil || !res.Acquired {
		t.Fatalf("AcquireLeaseAt(%d) = %+v, %v", tomb.Version, res, err)
	}
	if it, err := e.tbl.GetLeased(c, "k"); !errors.Is(err, l2.ErrNotFound) || !it.Leased {
		t.Fatalf("GetLeased under A's lease = %+v, %v; want Leased", it, err)
	}
	// The sweeper deletes the tombstone (here: the raw SDK).
	if _, err := e.raw.DeleteItem(c, &dynamodb.DeleteItemInput{TableName: aws.String(e.name),
		Key: map[string]types.AttributeValue{"pk": S("ns#k")}}); err != nil {
		t.Fatal(err)
	}
	if it, err := e.tbl.GetLeased(c, "k"); !errors.Is(err, l2.ErrNotFound) || it.Leased || it.Version != 0 {
		t.Fatalf("GetLeased after the sweep = %+v, %v; want ErrNotFound, version 0, not leased", it, err)
	}
	if res, err := e.tbl.AcquireLeaseAt(c, "k", 0, "B", time.Minute); err != nil || !res.Acquired {
		t.Fatalf("AcquireLeaseAt(0) after the sweep = %+v, %v; want acquired", res, err)
	}
	// A's fill loses; B's lands.
	if _, err := e.tbl.Fill(c, "k", []byte("a"), false, time.Hour, "A", l2.IfVersion(tomb.Version)); !errors.Is(err, l2.ErrLeaseLost) && !errors.Is(err, l2.ErrConflict) {
		t.Fatalf("A's fill after the sweep = %v; want it refused", err)
	}
	if _, err := e.tbl.Fill(c, "k", []byte("b"), false, time.Hour, "B", l2.IfVersion(0)); err != nil {
		t.Fatalf("B's fill: %v", err)
	}
	if it := mustGet(t, e.tbl, "k"); string(it.Value) != "b" {
		t.Fatalf("Get = %q, want b", it.Value)
	}
}

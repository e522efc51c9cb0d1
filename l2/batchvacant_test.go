package l2_test

import (
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/l2"
)

func TestBatchGetIncludeVacant(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	if _, err := e.tbl.Put(c, "live", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := e.tbl.Put(c, "deleted", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := e.tbl.Delete(c, "deleted"); err != nil { // tombstone at version 2
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour).Unix()
	e.putRaw(t, map[string]types.AttributeValue{"pk": S("ns#expired"), "v": B("old"), "ver": N(7), "exp": N(past)})
	keys := []string{"live", "deleted", "expired", "absent"}

	// Without the option: only the live entry.
	m, err := e.tbl.BatchGet(c, keys)
	if err != nil || len(m) != 1 || string(m["live"].Value) != "v" {
		t.Fatalf("BatchGet = %+v, %v; want only the live entry", m, err)
	}
	// With it: vacant items too, with their versions and nothing else.
	m, err = e.tbl.BatchGet(c, keys, l2.IncludeVacant())
	if err != nil || len(m) != 3 {
		t.Fatalf("BatchGet(IncludeVacant) = %+v, %v; want 3 items", m, err)
	}
	if it := m["live"]; it.Vacant || string(it.Value) != "v" || it.Version != 1 {
		t.Errorf("live = %+v", it)
	}
	for key, ver := range map[string]int64{"deleted": 2, "expired": 7} {
		if it := m[key]; !it.Vacant || it.Version != ver || it.Value != nil || it.Key != key || !it.ExpiresAt.IsZero() {
			t.Errorf("%s = %+v; want Vacant at version %d, no value", key, it, ver)
		}
	}
	if _, ok := m["absent"]; ok {
		t.Errorf("a key without an item is in the map")
	}
	// The version is what a Fill's IfVersion needs.
	if _, err := e.tbl.Fill(c, "deleted", []byte("new"), false, time.Minute, "", l2.IfVersion(m["deleted"].Version)); err != nil {
		t.Fatalf("Fill over the tombstone's version: %v", err)
	}
	if _, err := e.tbl.Fill(c, "expired", []byte("new"), false, time.Minute, "", l2.IfVersion(0)); !errors.Is(err, l2.ErrConflict) {
		t.Fatalf("Fill at version 0 over an expired item = %v; want ErrConflict", err)
	}
}

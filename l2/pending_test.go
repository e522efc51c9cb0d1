package l2_test

import (
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tieredcache/tieredcache/l2"
)

func TestDeleteIfVersionSupersedesOnlyThatVersion(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	ver, err := e.tbl.Put(c, "k", []byte("old"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	newer, err := e.tbl.Put(c, "k", []byte("newer"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var ce *l2.ConflictError
	if err := e.tbl.DeleteIfVersion(c, "k", ver); !errors.As(err, &ce) || ce.Current == nil || string(ce.Current.Value) != "newer" {
		t.Fatalf("DeleteIfVersion at an older version = %v; want a *ConflictError carrying the newer entry", err)
	}
	if it, err := e.tbl.Get(c, "k"); err != nil || string(it.Value) != "newer" {
		t.Fatalf("Get = %+v, %v; the newer write must survive", it, err)
	}
	if err := e.tbl.DeleteIfVersion(c, "k", newer); err != nil {
		t.Fatalf("DeleteIfVersion at the current version: %v", err)
	}
	it, err := e.tbl.Get(c, "k")
	if !errors.Is(err, l2.ErrNotFound) || it.Version <= newer {
		t.Fatalf("Get after DeleteIfVersion = %+v, %v; want a tombstone at a later version", it, err)
	}
}

func TestBatchGetReportsCorruptKeys(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	if _, err := e.tbl.Put(c, "ok", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	e.putRaw(t, map[string]types.AttributeValue{"pk": S("ns#bad"), "v": B("x"), "ver": S("1")}) // ver as a string
	var corrupt []string
	m, err := e.tbl.BatchGet(c, []string{"ok", "bad", "absent"}, l2.IncludeVacant(), l2.OnCorrupt(func(k string, _ error) { corrupt = append(corrupt, k) }))
	if err != nil || len(m) != 1 {
		t.Fatalf("BatchGet = %v, %v", m, err)
	}
	if len(corrupt) != 1 || corrupt[0] != "bad" {
		t.Fatalf("OnCorrupt reported %v; want [bad]", corrupt)
	}
}

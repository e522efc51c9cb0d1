package l2_test

import (
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/ddbfault"
	"github.com/tieredcache/tieredcache/l2"
)

// Stats.ByOp counts each DynamoDB call under its API operation, as the SDK
// middleware sees them, and its sums are Calls, Errors and Throttles.
func TestStatsByOperation(t *testing.T) {
	e := newEnv(t, nil)
	c := ctx(t)
	if _, err := e.tbl.Put(c, "a", []byte("1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := e.tbl.AcquireLeaseAt(c, "b", 0, "owner-1", time.Minute); err != nil {
		t.Fatal(err)
	}
	mustGet(t, e.tbl, "a")
	if _, err := e.tbl.BatchGet(c, []string{"a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	remove := e.inj.Add(ddbfault.Rule{Op: "GetItem", Throttle: true})
	if _, err := e.tbl.Get(c, "a"); err == nil {
		t.Fatal("Get under a throttle rule succeeded")
	}
	remove()

	st := e.tbl.Stats()
	var sum l2.OpStats
	for _, op := range []string{"GetItem", "BatchGetItem", "UpdateItem"} {
		got, ok := st.ByOp[op]
		if !ok {
			t.Fatalf("ByOp has no %s: %+v", op, st.ByOp)
		}
		if want := int64(e.inj.Calls(op)); got.Calls != want || want == 0 {
			t.Errorf("ByOp[%s].Calls = %d; the client made %d", op, got.Calls, want)
		}
	}
	for _, o := range st.ByOp {
		sum.Calls += o.Calls
		sum.Errors += o.Errors
		sum.Throttles += o.Throttles
	}
	if sum.Calls != st.Calls || sum.Errors != st.Errors || sum.Throttles != st.Throttles {
		t.Errorf("sums over ByOp %+v; want Calls %d, Errors %d, Throttles %d", sum, st.Calls, st.Errors, st.Throttles)
	}
	if g := st.ByOp["GetItem"]; g.Errors != 1 || g.Throttles != 1 {
		t.Errorf("ByOp[GetItem] = %+v; want 1 error, 1 throttle", g)
	}
	if u := st.ByOp["UpdateItem"]; u.Errors != 0 {
		t.Errorf("ByOp[UpdateItem] = %+v; want no errors", u)
	}
	if len(st.ByOp) != 3 {
		t.Errorf("ByOp = %+v; want only the three operations called", st.ByOp)
	}
}

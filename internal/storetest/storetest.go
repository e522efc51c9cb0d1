// Package storetest is the contract of the cache's table: one suite that
// every implementation passes (l2.Table on DynamoDB Local, and the in-memory
// twin internal/memstore), in the way rueidis runs one store suite over
// every implementation. What it checks is what tiered relies on (see
// tiered/store.go); each case names the rule it checks.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/l2"
)

// Store is the contract under test: l2.Store, what tiered uses of its table.
type Store = l2.Store

// Namespace and Writer are the options every Store under test is built with.
const (
	Namespace = "ns"
	Writer    = "w1"
)

// Harness is one implementation under test, on a fresh, empty table.
type Harness struct {
	// Store is built with Namespace and Writer, and reads Now as its clock.
	Store Store
	// Now is the store's clock; Advance moves it forward.
	Now     func() time.Time
	Advance func(d time.Duration)
	// Other returns another handle on the same table (another process),
	// with the given writer mark ("" for none), on the same clock.
	Other func(t *testing.T, writer string) Store
	// Corrupt replaces the absent key's item by one that does not follow
	// the item format.
	Corrupt func(t *testing.T, key string)
}

// Run runs every case of the contract, each on a fresh harness.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	cases := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"PutGetRoundTrip", testPutGetRoundTrip},
		{"VersionsOnlyGrow", testVersionsOnlyGrow},
		{"DeleteLeavesATombstone", testDeleteLeavesATombstone},
		{"FillOnlyOverVacant", testFillOnlyOverVacant},
		{"FillIfVersion", testFillIfVersion},
		{"LeaseGuardsFill", testLeaseGuardsFill},
		{"WritesVoidLeases", testWritesVoidLeases},
		{"LeaseExpiryAndRelease", testLeaseExpiryAndRelease},
		{"LeaseBoundToVersion", testLeaseBoundToVersion},
		{"LeaselessFillIgnoresLeases", testLeaselessFillIgnoresLeases},
		{"RefreshOverVersion", testRefreshOverVersion},
		{"DeleteIfVersion", testDeleteIfVersion},
		{"ExpiryFiltering", testExpiryFiltering},
		{"BatchGet", testBatchGet},
		{"BatchGetIncludeVacant", testBatchGetIncludeVacant},
		{"BadInputsAreTypedErrors", testBadInputs},
		{"ValueSizeLimit", testValueSizeLimit},
		{"WriterMark", testWriterMark},
		{"CorruptItems", testCorruptItems},
		{"CanceledContext", testCanceledContext},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newHarness(t)) })
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func mustGet(t *testing.T, s Store, key string) l2.Item {
	t.Helper()
	it, err := s.Get(ctx(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return it
}

// notFound returns the Item Get gives with ErrNotFound.
func notFound(t *testing.T, s Store, key, why string) l2.Item {
	t.Helper()
	it, err := s.Get(ctx(t), key)
	if !errors.Is(err, l2.ErrNotFound) {
		t.Fatalf("%s: Get = %+v, %v; want ErrNotFound", why, it, err)
	}
	return it
}

func mustPut(t *testing.T, s Store, key, value string, want int64) {
	t.Helper()
	if v, err := s.Put(ctx(t), key, []byte(value), time.Minute); err != nil || v != want {
		t.Fatalf("Put(%q) = %d, %v; want version %d", key, v, err, want)
	}
}

func mustFill(t *testing.T, s Store, key, value, lease string, want int64, opts ...l2.FillOption) {
	t.Helper()
	if v, err := s.Fill(ctx(t), key, []byte(value), false, time.Minute, lease, opts...); err != nil || v != want {
		t.Fatalf("Fill(%q, lease %q) = %d, %v; want version %d", key, lease, v, err, want)
	}
}

// conflict asserts err is a *l2.ConflictError, lease-lost or not as wanted.
func conflict(t *testing.T, err error, leaseLost bool, what string) *l2.ConflictError {
	t.Helper()
	var ce *l2.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, l2.ErrConflict) || errors.Is(err, l2.ErrLeaseLost) != leaseLost || ce.LeaseLost != leaseLost {
		t.Fatalf("%s = %v; want *ConflictError with LeaseLost %v", what, err, leaseLost)
	}
	return ce
}

// wantCurrent asserts ce carries the live entry value at version.
func wantCurrent(t *testing.T, ce *l2.ConflictError, value string, version int64, what string) {
	t.Helper()
	if ce.Current == nil || string(ce.Current.Value) != value || ce.Current.Version != version || ce.Current.NotFound {
		t.Fatalf("%s: Current = %+v; want value %q at version %d", what, ce.Current, value, version)
	}
}

// expSeconds is the ExpiresAt an entry written at now to live ttl carries:
// whole seconds, rounded up.
func expSeconds(now time.Time, ttl time.Duration) time.Time {
	e := now.Add(ttl)
	s := e.Unix()
	if e.Nanosecond() > 0 {
		s++
	}
	return time.Unix(s, 0)
}

func testPutGetRoundTrip(t *testing.T, h Harness) {
	s := h.Store
	if it := notFound(t, s, "k", "absent key"); it.Version != 0 || it.Leased || it.Expired {
		t.Fatalf("absent key: Item %+v, want version 0", it)
	}
	before := h.Now()
	mustPut(t, s, "k", "one", 1)
	after := h.Now()
	it := mustGet(t, s, "k")
	if it.Key != "k" || string(it.Value) != "one" || it.Version != 1 || it.NotFound || it.Vacant || it.Expired || it.Leased {
		t.Fatalf("Get = %+v; want value one at version 1", it)
	}
	if lo, hi := expSeconds(before, time.Minute), expSeconds(after, time.Minute); it.ExpiresAt.Before(lo) || it.ExpiresAt.After(hi) {
		t.Errorf("ExpiresAt %v, want the Put's time + 1m rounded up to a second (%v..%v)", it.ExpiresAt, lo, hi)
	}
	// The returned value is the caller's: changing it changes nothing stored.
	it.Value[0] = 'X'
	if again := mustGet(t, s, "k"); string(again.Value) != "one" {
		t.Fatalf("Get after modifying a returned value = %q", again.Value)
	}
	// An empty value is a value (non-nil, empty), not a negative entry.
	if v, err := s.Put(ctx(t), "k", nil, time.Minute); err != nil || v != 2 {
		t.Fatalf("Put(nil) = %d, %v; want version 2", v, err)
	}
	if it := mustGet(t, s, "k"); it.Value == nil || len(it.Value) != 0 || it.NotFound {
		t.Fatalf("empty value read back as %+v", it)
	}
	// A negative entry reads back as NotFound with a nil Value.
	if v, err := s.Fill(ctx(t), "neg", []byte("ignored"), true, time.Minute, ""); err != nil || v != 1 {
		t.Fatalf("negative Fill = %d, %v", v, err)
	}
	if it := mustGet(t, s, "neg"); !it.NotFound || it.Value != nil || it.Version != 1 {
		t.Fatalf("negative entry read back as %+v", it)
	}
}

// testVersionsOnlyGrow: concurrent Puts of one key get distinct versions,
// 1 to n, and the last read is at n.
func testVersionsOnlyGrow(t *testing.T, h Harness) {
	const n = 20
	vers := make(chan int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			v, err := h.Store.Put(ctx(t), "k", []byte(fmt.Sprint(i)), time.Minute)
			if err != nil {
				t.Error(err)
			}
			vers <- v
		})
	}
	wg.Wait()
	close(vers)
	seen := map[int64]bool{}
	for v := range vers {
		if seen[v] || v < 1 || v > n {
			t.Fatalf("version %d repeated or outside 1..%d", v, n)
		}
		seen[v] = true
	}
	if it := mustGet(t, h.Store, "k"); it.Version != n {
		t.Fatalf("final version %d, want %d", it.Version, n)
	}
}

func testDeleteLeavesATombstone(t *testing.T, h Harness) {
	s := h.Store
	mustPut(t, s, "k", "one", 1)
	if err := s.Delete(ctx(t), "k"); err != nil {
		t.Fatal(err)
	}
	if it := notFound(t, s, "k", "after Delete"); it.Version != 2 || it.Leased || it.Expired || it.Value != nil {
		t.Fatalf("tombstone read as %+v; want version 2, nothing else", it)
	}
	// Versions keep growing across the delete.
	mustPut(t, s, "k", "three", 3)
	// Deleting an absent key leaves a tombstone too, with a version.
	if err := s.Delete(ctx(t), "never"); err != nil {
		t.Fatal(err)
	}
	if it := notFound(t, s, "never", "deleted absent key"); it.Version != 1 {
		t.Fatalf("tombstone of an absent key: %+v, want version 1", it)
	}
}

func testFillOnlyOverVacant(t *testing.T, h Harness) {
	s := h.Store
	mustFill(t, s, "k", "loaded", "", 1)
	_, err := s.Fill(ctx(t), "k", []byte("again"), false, time.Minute, "")
	ce := conflict(t, err, false, "Fill over a live fill")
	wantCurrent(t, ce, "loaded", 1, "Fill over a live fill")
	if ce.Current.Key != "k" {
		t.Errorf("Current.Key = %q", ce.Current.Key)
	}
	mustPut(t, s, "k", "written", 2)
	_, err = s.Fill(ctx(t), "k", nil, true, time.Minute, "")
	wantCurrent(t, conflict(t, err, false, "negative Fill over a Put"), "written", 2, "negative Fill over a Put")
	if it := mustGet(t, s, "k"); string(it.Value) != "written" || it.Version != 2 {
		t.Fatalf("after refused fills: %+v", it)
	}
	// Unguarded (no lease, no IfVersion), a fill lands on a tombstone: that
	// is the race IfVersion and leases close.
	if err := s.Delete(ctx(t), "k"); err != nil {
		t.Fatal(err)
	}
	mustFill(t, s, "k", "refill", "", 4)
}

func testFillIfVersion(t *testing.T, h Harness) {
	s := h.Store
	// A load begins on a miss at version 0; a Put and a Delete land
	// meanwhile: the load may be older than the table.
	seen := notFound(t, s, "k", "absent").Version
	mustPut(t, s, "k", "new", 1)
	if err := s.Delete(ctx(t), "k"); err != nil {
		t.Fatal(err)
	}
	_, err := s.Fill(ctx(t), "k", []byte("old load"), false, time.Minute, "", l2.IfVersion(seen))
	if ce := conflict(t, err, false, "IfVersion(0) after Put+Delete"); ce.Current != nil {
		t.Fatalf("Current = %+v over a tombstone, want nil", ce.Current)
	}
	notFound(t, s, "k", "refused IfVersion fill")
	// A load that began at the tombstone's version lands.
	seen = notFound(t, s, "k", "tombstone").Version
	mustFill(t, s, "k", "fresh", "", seen+1, l2.IfVersion(seen))
	// IfVersion over a live entry is still refused: Fill never replaces one.
	_, err = s.Fill(ctx(t), "k", []byte("x"), false, time.Minute, "", l2.IfVersion(seen+1))
	wantCurrent(t, conflict(t, err, false, "IfVersion over a live entry"), "fresh", seen+1, "IfVersion over a live entry")
}

// acquire takes owner's lease on key at version, or fails the test.
func acquire(t *testing.T, s Store, key string, version int64, owner string, ttl time.Duration) l2.LeaseResult {
	t.Helper()
	res, err := s.AcquireLeaseAt(ctx(t), key, version, owner, ttl)
	if err != nil || !res.Acquired {
		t.Fatalf("AcquireLeaseAt(%q, %d, %q) = %+v, %v; want acquired", key, version, owner, res, err)
	}
	return res
}

// leased asserts what GetLeased says of the vacant key: its version, and
// whether a live lease holds it.
func leased(t *testing.T, s Store, key string, version int64, held bool, why string) {
	t.Helper()
	it, err := s.GetLeased(ctx(t), key)
	if !errors.Is(err, l2.ErrNotFound) || it.Version != version || it.Leased != held {
		t.Fatalf("%s: GetLeased = %+v, %v; want ErrNotFound at version %d, Leased %v", why, it, err, version, held)
	}
}

func testLeaseGuardsFill(t *testing.T, h Harness) {
	s := h.Store
	before := h.Now()
	res := acquire(t, s, "k", 0, "A", 10*time.Second)
	if lo := before.Add(10 * time.Second).Add(-time.Millisecond); res.Expires.Before(lo) || res.Expires.After(h.Now().Add(10*time.Second)) {
		t.Errorf("lease expires %v, want about acquire time + 10s (from %v)", res.Expires, lo)
	}
	// The lease lives beside the key's item: Get does not see it (and
	// BatchGet has no item to return), GetLeased does.
	if it := notFound(t, s, "k", "leased key"); it.Leased || it.Version != 0 {
		t.Fatalf("leased key read by Get as %+v; want version 0, not Leased", it)
	}
	if m, err := s.BatchGet(ctx(t), []string{"k"}, l2.IncludeVacant()); err != nil || len(m) != 0 {
		t.Fatalf("BatchGet of a leased absent key = %v, %v; want nothing", m, err)
	}
	leased(t, s, "k", 0, true, "leased key")
	res2, err := s.AcquireLeaseAt(ctx(t), "k", 0, "B", 10*time.Second)
	if err != nil || res2.Acquired || !res2.HolderExpires.Equal(res.Expires) {
		t.Fatalf("second AcquireLeaseAt = %+v, %v; want HolderExpires %v", res2, err, res.Expires)
	}
	// The holder may take its own lease again.
	acquire(t, s, "k", 0, "A", 10*time.Second)
	// A lease fill names the version its lease is bound to.
	calls := s.Stats().Calls
	if _, err := s.Fill(ctx(t), "k", []byte("A's"), false, time.Minute, "A"); !errors.Is(err, l2.ErrInvalidLease) {
		t.Fatalf("lease Fill without IfVersion = %v, want ErrInvalidLease", err)
	}
	if s.Stats().Calls != calls {
		t.Errorf("a lease Fill without IfVersion reached the table")
	}
	mustFill(t, s, "k", "A's", "A", 1, l2.IfVersion(0))
	if it, err := s.GetLeased(ctx(t), "k"); err != nil || string(it.Value) != "A's" || it.Version != 1 || it.Leased {
		t.Fatalf("GetLeased after the fill = %+v, %v", it, err)
	}
	_, err = s.Fill(ctx(t), "k", []byte("again"), false, time.Minute, "A", l2.IfVersion(0))
	wantCurrent(t, conflict(t, err, true, "second Fill with a consumed lease"), "A's", 1, "second Fill with a consumed lease")
	// The fill moved the version: A's lease (bound to 0) binds no one after
	// a Delete.
	if err := s.Delete(ctx(t), "k"); err != nil {
		t.Fatal(err)
	}
	leased(t, s, "k", 2, false, "deleted after the lease's fill")
	acquire(t, s, "k", 2, "C", time.Second)
}

func testWritesVoidLeases(t *testing.T, h Harness) {
	s := h.Store
	acquire(t, s, "k", 0, "A", 10*time.Second)
	if err := s.Delete(ctx(t), "k"); err != nil {
		t.Fatal(err)
	}
	_, err := s.Fill(ctx(t), "k", []byte("stale"), false, time.Minute, "A", l2.IfVersion(0))
	conflict(t, err, true, "Fill after Delete")
	notFound(t, s, "k", "stale fill after Delete")
	// The voided lease holds no one: the next reader (at the tombstone's
	// version) takes a lease at once.
	leased(t, s, "k", 1, false, "lease voided by a Delete")
	acquire(t, s, "k", 1, "A2", 10*time.Second)
	mustPut(t, s, "k", "new", 2)
	_, err = s.Fill(ctx(t), "k", []byte("stale"), false, time.Minute, "A2", l2.IfVersion(1))
	wantCurrent(t, conflict(t, err, true, "Fill after Put"), "new", 2, "Fill after Put")
}

func testLeaseExpiryAndRelease(t *testing.T, h Harness) {
	s := h.Store
	acquire(t, s, "k", 0, "A", time.Second)
	h.Advance(2 * time.Second)
	leased(t, s, "k", 0, false, "expired lease")
	acquire(t, s, "k", 0, "B", time.Second)
	if err := s.ReleaseLease(ctx(t), "k", "B"); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	conflict(t, s.ReleaseLease(ctx(t), "k", "B"), true, "second ReleaseLease")
	leased(t, s, "k", 0, false, "after release")
	acquire(t, s, "k", 0, "C", time.Second)
	conflict(t, s.ReleaseLease(ctx(t), "k", "A"), true, "ReleaseLease of a lease taken over")
	// Leases never moved the version: the holder's fill is the first entry.
	mustFill(t, s, "k", "C's", "C", 1, l2.IfVersion(0))
	conflict(t, s.ReleaseLease(ctx(t), "absent", "C"), true, "ReleaseLease of an absent key")
	// An expired holder whose key nobody wrote since its read still fills:
	// leases keep herds off the source; versions keep fills fresh.
	acquire(t, s, "late", 0, "D", time.Second)
	h.Advance(2 * time.Second)
	acquire(t, s, "late", 0, "E", time.Second)
	mustFill(t, s, "late", "D's", "D", 1, l2.IfVersion(0))
	_, err := s.Fill(ctx(t), "late", []byte("E's"), false, time.Minute, "E", l2.IfVersion(0))
	wantCurrent(t, conflict(t, err, true, "Fill after the expired holder's"), "D's", 1, "Fill after the expired holder's")
}

func testLeaseBoundToVersion(t *testing.T, h Harness) {
	s := h.Store
	mustPut(t, s, "k", "v", 1)
	if err := s.Delete(ctx(t), "k"); err != nil {
		t.Fatal(err)
	}
	res := acquire(t, s, "k", 2, "A", 10*time.Second)
	// A reader that saw an older version (a stale read) waits for it...
	if r, err := s.AcquireLeaseAt(ctx(t), "k", 1, "B", 10*time.Second); err != nil || r.Acquired || !r.HolderExpires.Equal(res.Expires) {
		t.Fatalf("AcquireLeaseAt at an older version = %+v, %v; want HolderExpires %v", r, err, res.Expires)
	}
	leased(t, s, "k", 2, true, "lease bound to the key's version")
	// A reader that saw a newer version takes the lease over: the holder's
	// fill can only lose.
	mustPut(t, s, "k", "w", 3)
	if err := s.Delete(ctx(t), "k"); err != nil {
		t.Fatal(err)
	}
	leased(t, s, "k", 4, false, "lease bound to an older version")
	acquire(t, s, "k", 4, "B", 10*time.Second)
	_, err := s.Fill(ctx(t), "k", []byte("A's"), false, time.Minute, "A", l2.IfVersion(2))
	conflict(t, err, true, "Fill of a lease taken over")
	mustFill(t, s, "k", "B's", "B", 5, l2.IfVersion(4))
	if _, err := s.AcquireLeaseAt(ctx(t), "k", -1, "C", time.Second); !errors.Is(err, l2.ErrInvalidLease) {
		t.Fatalf("AcquireLeaseAt at version -1 = %v, want ErrInvalidLease", err)
	}
}

func testLeaselessFillIgnoresLeases(t *testing.T, h Harness) {
	s := h.Store
	acquire(t, s, "k", 0, "A", 10*time.Second)
	// A fill without a lease (GetMany's, or a node that gave up waiting)
	// does not read the lease item: it lands, and the holder's fill loses
	// to it.
	mustFill(t, s, "k", "other", "", 1, l2.IfVersion(0))
	_, err := s.Fill(ctx(t), "k", []byte("A's"), false, time.Minute, "A", l2.IfVersion(0))
	wantCurrent(t, conflict(t, err, true, "holder's Fill after a lease-less one"), "other", 1, "holder's Fill after a lease-less one")
}

func testRefreshOverVersion(t *testing.T, h Harness) {
	s := h.Store
	mustPut(t, s, "k", "one", 1)
	// Unlike Fill, Refresh replaces a live entry, at the version seen.
	if v, err := s.Refresh(ctx(t), "k", []byte("reloaded"), false, time.Minute, 1); err != nil || v != 2 {
		t.Fatalf("Refresh over version 1 = %d, %v; want 2", v, err)
	}
	_, err := s.Refresh(ctx(t), "k", []byte("older"), false, time.Minute, 1)
	wantCurrent(t, conflict(t, err, false, "Refresh over a moved version"), "reloaded", 2, "Refresh over a moved version")
	if v, err := s.Refresh(ctx(t), "k", nil, true, time.Minute, 2); err != nil || v != 3 {
		t.Fatalf("negative Refresh = %d, %v", v, err)
	}
	if it := mustGet(t, s, "k"); !it.NotFound || it.Version != 3 {
		t.Fatalf("after negative Refresh: %+v", it)
	}
	// Version 0: the key has no version yet.
	if v, err := s.Refresh(ctx(t), "fresh", []byte("x"), false, time.Minute, 0); err != nil || v != 1 {
		t.Fatalf("Refresh(0) of an absent key = %d, %v", v, err)
	}
	if err := s.Delete(ctx(t), "k"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Refresh(ctx(t), "k", []byte("x"), false, time.Minute, 3)
	if ce := conflict(t, err, false, "Refresh over a Delete"); ce.Current != nil {
		t.Fatalf("Current over a tombstone = %+v", ce.Current)
	}
}

func testDeleteIfVersion(t *testing.T, h Harness) {
	s := h.Store
	mustPut(t, s, "k", "one", 1)
	wantCurrent(t, conflict(t, s.DeleteIfVersion(ctx(t), "k", 0), false, "DeleteIfVersion(0)"), "one", 1, "DeleteIfVersion(0)")
	if err := s.DeleteIfVersion(ctx(t), "k", 1); err != nil {
		t.Fatalf("DeleteIfVersion(1): %v", err)
	}
	if it := notFound(t, s, "k", "after DeleteIfVersion"); it.Version != 2 {
		t.Fatalf("tombstone %+v, want version 2", it)
	}
	if err := s.DeleteIfVersion(ctx(t), "absent", 0); err != nil {
		t.Fatalf("DeleteIfVersion(0) of an absent key: %v", err)
	}
	if it := notFound(t, s, "absent", "deleted absent key"); it.Version != 1 {
		t.Fatalf("tombstone %+v, want version 1", it)
	}
}

func testExpiryFiltering(t *testing.T, h Harness) {
	s := h.Store
	if _, err := s.Put(ctx(t), "k", []byte("v"), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fill(ctx(t), "neg", nil, true, 30*time.Second, ""); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, "k")
	h.Advance(32 * time.Second)
	// Expired: absent for readers, but Get hands back the last entry, marked,
	// for stale-if-error, with its version for a later IfVersion.
	it := notFound(t, s, "k", "clock past exp")
	if !it.Expired || string(it.Value) != "v" || it.Version != 1 || it.Leased {
		t.Fatalf("expired entry = %+v; want Expired, value v, version 1", it)
	}
	if it := notFound(t, s, "neg", "expired negative entry"); !it.Expired || !it.NotFound {
		t.Fatalf("expired negative entry = %+v", it)
	}
	if m, err := s.BatchGet(ctx(t), []string{"k", "neg"}); err != nil || len(m) != 0 {
		t.Fatalf("BatchGet of expired keys = %v, %v; want empty", m, err)
	}
	// An expired item is vacant: a fill lands on it with the next version...
	mustFill(t, s, "k", "fresh", "", 2, l2.IfVersion(1))
	// ...and a lease is taken over it, at its version, leaving it as it is.
	acquire(t, s, "neg", 1, "A", time.Second)
	if it, err := s.GetLeased(ctx(t), "neg"); !errors.Is(err, l2.ErrNotFound) || !it.Expired || !it.NotFound || !it.Leased || it.Version != 1 {
		t.Fatalf("lease over an expired entry: GetLeased = %+v, %v; want Expired, Leased at version 1", it, err)
	}
	mustFill(t, s, "neg", "loaded", "A", 2, l2.IfVersion(1))
}

func testBatchGet(t *testing.T, h Harness) {
	s := h.Store
	if m, err := s.BatchGet(ctx(t), nil); err != nil || len(m) != 0 {
		t.Fatalf("BatchGet(nil) = %v, %v", m, err)
	}
	const n = 250
	var keys []string
	for i := range n {
		k := fmt.Sprintf("k%03d", i)
		keys = append(keys, k)
		if i%5 != 0 { // every fifth key is missing
			if _, err := s.Put(ctx(t), k, []byte("v"+k), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
	}
	keys = append(keys, keys[:30]...) // duplicates are dropped
	calls := s.Stats().Calls
	m, err := s.BatchGet(ctx(t), keys)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Calls - calls; got != 3 {
		t.Errorf("BatchGet of %d distinct keys made %d calls, want 3 (100 keys a call)", n, got)
	}
	if len(m) != n-n/5 {
		t.Fatalf("BatchGet returned %d keys, want %d", len(m), n-n/5)
	}
	for i := range n {
		k := keys[i]
		it, ok := m[k]
		if i%5 == 0 {
			if ok {
				t.Fatalf("missing key %s returned: %+v", k, it)
			}
			continue
		}
		if !ok || it.Key != k || string(it.Value) != "v"+k || it.Version != 1 || it.Vacant {
			t.Fatalf("BatchGet[%s] = %+v, %v", k, it, ok)
		}
	}
	// Any invalid key fails the whole call, before any request.
	calls = s.Stats().Calls
	if m, err := s.BatchGet(ctx(t), []string{"k001", ""}); !errors.Is(err, l2.ErrEmptyKey) || m != nil {
		t.Fatalf("BatchGet with an empty key = %v, %v; want nil, ErrEmptyKey", m, err)
	}
	if s.Stats().Calls != calls {
		t.Errorf("a BatchGet refused for its keys made a call")
	}
}

func testBatchGetIncludeVacant(t *testing.T, h Harness) {
	s := h.Store
	mustPut(t, s, "live", "v", 1)
	mustPut(t, s, "deleted", "v", 1)
	if err := s.Delete(ctx(t), "deleted"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx(t), "expired", []byte("v"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	h.Advance(12 * time.Second)
	keys := []string{"live", "deleted", "expired", "absent"}
	// Without IncludeVacant only the live entry comes back (its 1m TTL
	// outlives the 12s the clock moved).
	m, err := s.BatchGet(ctx(t), keys)
	if _, ok := m["live"]; err != nil || !ok || len(m) != 1 {
		t.Fatalf("BatchGet = %v, %v; want only live", m, err)
	}
	m, err = s.BatchGet(ctx(t), keys, l2.IncludeVacant())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"deleted": 2, "expired": 1}
	for k, ver := range want {
		if it, ok := m[k]; !ok || !it.Vacant || it.Version != ver || it.Key != k || it.Value != nil {
			t.Errorf("IncludeVacant[%s] = %+v, %v; want Vacant at version %d", k, it, ok, ver)
		}
	}
	if it := m["live"]; it.Vacant || string(it.Value) != "v" {
		t.Errorf("IncludeVacant[live] = %+v", it)
	}
	if _, ok := m["absent"]; ok || len(m) != 3 {
		t.Errorf("IncludeVacant returned %d keys (absent: %v), want 3 without absent", len(m), ok)
	}
}

func testBadInputs(t *testing.T, h Harness) {
	s := h.Store
	long := strings.Repeat("x", l2.MaxPartitionKeyBytes) // + "ns#" is over
	bad := []struct {
		key  string
		want error
	}{{"", l2.ErrEmptyKey}, {"a\xffb", l2.ErrInvalidKey}, {long, l2.ErrKeyTooLong}}
	c := ctx(t)
	for _, b := range bad {
		calls := s.Stats().Calls
		errs := map[string]error{}
		_, errs["EncodeKey"] = s.EncodeKey(b.key)
		_, errs["Get"] = s.Get(c, b.key)
		_, errs["BatchGet"] = s.BatchGet(c, []string{"ok", b.key})
		_, errs["Put"] = s.Put(c, b.key, []byte("v"), time.Minute)
		_, errs["Fill"] = s.Fill(c, b.key, []byte("v"), false, time.Minute, "")
		_, errs["Refresh"] = s.Refresh(c, b.key, []byte("v"), false, time.Minute, 0)
		errs["Delete"] = s.Delete(c, b.key)
		errs["DeleteIfVersion"] = s.DeleteIfVersion(c, b.key, 0)
		_, errs["AcquireLeaseAt"] = s.AcquireLeaseAt(c, b.key, 0, "A", time.Second)
		errs["ReleaseLease"] = s.ReleaseLease(c, b.key, "A")
		_, errs["GetLeased"] = s.GetLeased(c, b.key)
		for op, err := range errs {
			if !errors.Is(err, b.want) {
				t.Errorf("%s(%.10q) = %v, want %v", op, b.key, err, b.want)
			}
		}
		if s.Stats().Calls != calls {
			t.Errorf("calls with key %.10q reached the table", b.key)
		}
	}
	var kl *l2.KeyTooLongError
	if _, err := s.EncodeKey(long); !errors.As(err, &kl) || kl.Len != len(Namespace)+1+len(long) || kl.Max != l2.MaxPartitionKeyBytes {
		t.Errorf("EncodeKey(long) = %v (%+v)", err, kl)
	}
	if pk, err := s.EncodeKey("k"); err != nil || pk != Namespace+"#k" {
		t.Errorf("EncodeKey(k) = %q, %v", pk, err)
	}
	if k, ok := s.DecodeKey(Namespace + "#a#b"); !ok || k != "a#b" {
		t.Errorf("DecodeKey = %q, %v", k, ok)
	}
	for _, pk := range []string{"other#k", Namespace + "#", "nohash"} {
		if _, ok := s.DecodeKey(pk); ok {
			t.Errorf("DecodeKey(%q) accepted", pk)
		}
	}
	if _, err := s.Put(c, "k", []byte("v"), 0); !errors.Is(err, l2.ErrInvalidTTL) {
		t.Errorf("Put with TTL 0 = %v", err)
	}
	if _, err := s.Fill(c, "k", []byte("v"), false, -time.Second, ""); !errors.Is(err, l2.ErrInvalidTTL) {
		t.Errorf("Fill with a negative TTL = %v", err)
	}
	if _, err := s.AcquireLeaseAt(c, "k", 0, "A", 0); !errors.Is(err, l2.ErrInvalidTTL) {
		t.Errorf("AcquireLeaseAt with TTL 0 = %v", err)
	}
	if _, err := s.AcquireLeaseAt(c, "k", 0, "", time.Second); !errors.Is(err, l2.ErrInvalidLease) {
		t.Errorf("AcquireLeaseAt with no owner = %v", err)
	}
	if err := s.ReleaseLease(c, "k", "\xff"); !errors.Is(err, l2.ErrInvalidLease) {
		t.Errorf("ReleaseLease with an invalid owner = %v", err)
	}
}

func testValueSizeLimit(t *testing.T, h Harness) {
	s := h.Store
	const key = "big"
	max := l2.MaxItemBytes - (len(Namespace) + 1 + len(key)) - l2.ItemOverheadBytes
	if err := s.CheckValue(key, make([]byte, max)); err != nil {
		t.Fatalf("CheckValue at the limit: %v", err)
	}
	var vt *l2.ValueTooLargeError
	if err := s.CheckValue(key, make([]byte, max+1)); !errors.As(err, &vt) || vt.Size != max+1 || vt.Max != max {
		t.Fatalf("CheckValue over the limit = %v (%+v)", err, vt)
	}
	calls := s.Stats().Calls
	if _, err := s.Put(ctx(t), key, make([]byte, max+1), time.Minute); !errors.Is(err, l2.ErrValueTooLarge) {
		t.Fatalf("Put over the limit = %v", err)
	}
	if _, err := s.Fill(ctx(t), key, make([]byte, max+1), false, time.Minute, ""); !errors.Is(err, l2.ErrValueTooLarge) {
		t.Fatalf("Fill over the limit = %v", err)
	}
	if _, err := s.Refresh(ctx(t), key, make([]byte, max+1), false, time.Minute, 0); !errors.Is(err, l2.ErrValueTooLarge) {
		t.Fatalf("Refresh over the limit = %v", err)
	}
	// A negative fill ignores the value it is given.
	if _, err := s.Fill(ctx(t), "negbig", make([]byte, max+1), true, time.Minute, ""); err != nil {
		t.Fatalf("negative Fill with an oversized value: %v", err)
	}
	if s.Stats().Calls != calls+1 {
		t.Errorf("oversized writes reached the table: %d calls, want 1", s.Stats().Calls-calls)
	}
	if _, err := s.Put(ctx(t), key, make([]byte, max), time.Minute); err != nil {
		t.Fatalf("Put at the limit: %v", err)
	}
	if it := mustGet(t, s, key); len(it.Value) != max {
		t.Fatalf("value at the limit read back with %d bytes", len(it.Value))
	}
}

func testWriterMark(t *testing.T, h Harness) {
	s := h.Store
	mustPut(t, s, "k", "mine", 1)
	if it := mustGet(t, s, "k"); it.Writer != Writer {
		t.Fatalf("Writer = %q, want %q", it.Writer, Writer)
	}
	other := h.Other(t, "w2")
	if it := mustGet(t, other, "k"); it.Writer != Writer || string(it.Value) != "mine" {
		t.Fatalf("another handle reads %+v", it)
	}
	if _, err := other.Put(ctx(t), "k", []byte("theirs"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if it := mustGet(t, s, "k"); it.Writer != "w2" || it.Version != 2 {
		t.Fatalf("after another writer's Put: %+v", it)
	}
	// An unmarked handle's write leaves no mark: a mark never outlives its
	// own write.
	if _, err := h.Other(t, "").Put(ctx(t), "k", []byte("anon"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if it := mustGet(t, s, "k"); it.Writer != "" {
		t.Fatalf("after an unmarked Put: Writer %q", it.Writer)
	}
	_, err := s.Fill(ctx(t), "k", []byte("x"), false, time.Minute, "")
	if ce := conflict(t, err, false, "Fill over a live entry"); ce.Current == nil || ce.Current.Writer != "" {
		t.Fatalf("Current = %+v", ce.Current)
	}
	if err := s.Delete(ctx(t), "k"); err != nil {
		t.Fatal(err)
	}
	mustFill(t, other, "k", "filled", "", 5)
	if it := mustGet(t, s, "k"); it.Writer != "w2" {
		t.Fatalf("after a fill by w2: Writer %q", it.Writer)
	}
}

func testCorruptItems(t *testing.T, h Harness) {
	s := h.Store
	h.Corrupt(t, "c")
	before := s.Stats().CorruptItems
	if _, err := s.Get(ctx(t), "c"); !errors.Is(err, l2.ErrCorruptItem) {
		t.Fatalf("Get of a corrupt item = %v", err)
	}
	var reported []string
	m, err := s.BatchGet(ctx(t), []string{"c"}, l2.IncludeVacant(), l2.OnCorrupt(func(k string, err error) {
		if !errors.Is(err, l2.ErrCorruptItem) {
			t.Errorf("OnCorrupt error %v", err)
		}
		reported = append(reported, k)
	}))
	if err != nil || len(m) != 0 || len(reported) != 1 || reported[0] != "c" {
		t.Fatalf("BatchGet of a corrupt item = %v, %v; reported %v", m, err, reported)
	}
	if got := s.Stats().CorruptItems - before; got != 2 {
		t.Errorf("CorruptItems grew by %d, want 2 (one per read)", got)
	}
	// A fill replaces it as over a vacant item, at a version above every
	// counter version (unix microseconds).
	v, err := s.Fill(ctx(t), "c", []byte("fresh"), false, time.Minute, "", l2.IfVersion(0))
	if err != nil || v < h.Now().Add(-time.Hour).UnixMicro() {
		t.Fatalf("Fill over a corrupt item = %d, %v; want a repair version", v, err)
	}
	if it := mustGet(t, s, "c"); string(it.Value) != "fresh" || it.Version != v {
		t.Fatalf("after the repair: %+v", it)
	}
	if s.Stats().Repairs < 1 {
		t.Errorf("Repairs = %d, want the repair counted", s.Stats().Repairs)
	}
	// A Put replaces one too.
	h.Corrupt(t, "c2")
	if v, err := s.Put(ctx(t), "c2", []byte("x"), time.Minute); err != nil || v < h.Now().Add(-time.Hour).UnixMicro() {
		t.Fatalf("Put over a corrupt item = %d, %v", v, err)
	}
}

func testCanceledContext(t *testing.T, h Harness) {
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Store.Get(c, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a canceled context = %v", err)
	}
	if _, err := h.Store.Put(c, "k", []byte("v"), time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a canceled context = %v", err)
	}
	notFound(t, h.Store, "k", "after a canceled Put")
}

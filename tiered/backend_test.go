package tiered_test

import (
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/dynamolocal"
	"github.com/tieredcache/tieredcache/internal/memstore"
	"github.com/tieredcache/tieredcache/internal/storetest"
	"github.com/tieredcache/tieredcache/tiered"
)

// The semantics tests (stale-fill races, negative caching, GetMany,
// refresh-ahead, stale-if-error, TTLs) build their nodes with newSemNode
// and peers of them with node.peer. In the full suite those are newNode's
// nodes on DynamoDB Local, stream and all. Under -short (a developer's
// choice: `make test` never passes it, and CI=true refuses it) they share an
// in-memory table (internal/memstore, which passes l2's contract suite,
// internal/storetest) and follow no stream: no Java runs. What needs the
// stream or DynamoDB itself (coherence, outages, faults injected in the SDK)
// stays on newNode, which skips under -short (dynamolocal.ForTest).

// newSemNode is a node on a fresh table: DynamoDB Local, or under -short an
// in-memory one.
func newSemNode(t testing.TB, tweak func(*tiered.Options[string])) *node {
	t.Helper()
	table := dynamolocal.TableName(t)
	if !testing.Short() {
		return newNode(t, table, tweak)
	}
	mem, err := memstore.New(memstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return memNode(t, mem, table, tweak)
}

// newSemCluster is newCluster for the semantics tests: size nodes on one
// fresh table (see newSemNode).
func newSemCluster(t testing.TB, size int, tweak func(*tiered.Options[string])) []*node {
	t.Helper()
	nodes := []*node{newSemNode(t, tweak)}
	for len(nodes) < size {
		nodes = append(nodes, nodes[0].peer(t, tweak))
	}
	return nodes
}

// peer is another node (another process) on n's table.
func (n *node) peer(t testing.TB, tweak func(*tiered.Options[string])) *node {
	t.Helper()
	if n.mem == nil {
		return newNode(t, n.tableName, tweak)
	}
	return memNode(t, n.mem, n.tableName, tweak)
}

// memNode is a node on the in-memory table mem: its own handle (writer mark,
// clock, request counter), no stream.
func memNode(t testing.TB, mem *memstore.Store, table string, tweak func(*tiered.Options[string])) *node {
	t.Helper()
	n := &node{ops: &opCounter{}, events: make(chan string, 1), tableName: table, mem: mem}
	o := tiered.Options[string]{Table: table, CallTimeout: testCallTimeout}
	if tweak != nil {
		tweak(&o)
	}
	ns := o.Namespace
	tiered.SetTestStore(&o, func(writer string, now func() time.Time) tiered.Store {
		h, err := mem.Handle(memstore.Options{Namespace: ns, Writer: writer, Now: now, OnCall: n.ops.inc})
		if err != nil {
			t.Fatalf("memstore handle: %v", err)
		}
		return h
	})
	c, err := tiered.New(testContext(t), o)
	if err != nil {
		t.Fatalf("tiered.New: %v", err)
	}
	n.Cache = c
	t.Cleanup(func() { _ = c.Close() })
	return n
}

// table opens n's table directly (default namespace, no writer mark), as an
// operator's tool would: l2Table on DynamoDB Local.
func (n *node) table(t testing.TB) storetest.Store {
	t.Helper()
	if n.mem == nil {
		return l2Table(t, n.tableName)
	}
	h, err := n.mem.Handle(memstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// putExpired writes an entry for key whose expiry passed ago, as DynamoDB
// keeps it until its TTL sweeper runs.
func (n *node) putExpired(t *testing.T, key, value string, ago time.Duration) {
	t.Helper()
	if n.mem == nil {
		putExpired(t, n.tableName, key, value, ago)
		return
	}
	// Written a second before it expired, to live one second.
	past, err := n.mem.Handle(memstore.Options{Now: func() time.Time { return time.Now().Add(-ago - time.Second) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := past.Put(testContext(t), key, []byte(value), time.Second); err != nil {
		t.Fatalf("Put: %v", err)
	}
}

// elapse lets d pass for n, whose options carry clock (SetTestClock): on the
// in-memory table, which reads that clock as n does, by advancing it; on
// DynamoDB Local, whose table reads the real clock, by sleeping.
func (n *node) elapse(clock *tiered.TestClock, d time.Duration) {
	if n.mem != nil {
		clock.Advance(d)
		return
	}
	time.Sleep(d) // the expiry itself is under test, in both tiers
}

// inc counts one request of operation op (memstore.Options.OnCall).
func (c *opCounter) inc(op string) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[op]++
	c.mu.Unlock()
}

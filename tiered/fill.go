package tiered

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tieredcache/tieredcache/l1"
	"github.com/tieredcache/tieredcache/l2"
)

// The fill: every miss goes through it. GetOrLoad, Get, GetMany and
// refresh-ahead each start one fill of 1..N keys (flights.go decides who
// runs it; fly runs it on a goroutine of its own), which takes every key
// through these steps, in this order, and leaves one outcome per key:
//
//	begin  take each key's L1 fence (a Set, Delete, stream record or flush
//	       from now on makes this fill lose in L1), then look at L1 again: a
//	       fill that ended just before this one began may have filled it
//	read   read L2: GetItem for one key, BatchGetItem for many. A live item
//	       is adopted (into L1, behind the fence) and is the answer; a miss
//	       tells the version a fill must find to land (its guard)
//	lease  take the cross-node lease, or wait for its holder's fill
//	       (GetOrLoad only: Get never loads, GetMany takes no leases)
//	load   call the loader once for every key still missing (source.go)
//	store  write each loaded value to L2, conditioned on its guard; a write
//	       that loses means the table has a newer entry: no tier keeps the
//	       load, and the callers get that entry
//	keep   fill L1 behind the fence taken in begin
//
// Which write guards a loaded value (guard) is decided once, by read and
// lease. A key with a pending invalidation on this node is neither read nor
// written in L2 (pending.go).

// fillMode is what a fill may do.
type fillMode uint8

// String names the mode for MissInfo.Op.
func (m fillMode) String() string {
	switch m {
	case modeGet:
		return "get"
	case modeRefresh:
		return "refresh"
	}
	return "load"
}

const (
	modeGet     fillMode = iota // Get: read the tiers, never load
	modeLoad                    // GetOrLoad, GetMany: load what the tiers lack
	modeRefresh                 // refresh-ahead: reload unless L2 has a newer version
)

// guard is what a loaded value's L2 write is conditioned on.
type guard uint8

const (
	// guardNone: L2 was not read (outage, pending invalidation): a Delete
	// since the load began could not make an L2 write lose, so the value is
	// kept in L1 only.
	guardNone guard = iota
	// guardVersion: l2.IfVersion(seen), the version the read found vacant
	// (0: absent, or corrupt): a Set or Delete landing meanwhile wins.
	guardVersion
	// guardLease: the lease this fill holds, bound to seen (taken before
	// the loader ran): l2.IfVersion(seen) with the lease, so that any Set or
	// Delete since the read makes the fill lose.
	guardLease
	// guardRefresh: l2.Table.Refresh over seen, the version of the entry
	// being refreshed.
	guardRefresh
)

// outcome is what a fill gives the callers of one key: an entry (found,
// not found, or a stale value carrying its *StaleError), or an error.
type outcome[V any] struct {
	e   *entry[V]
	err error
}

func (o outcome[V]) result() (V, error) {
	if o.err != nil {
		var zero V
		return zero, o.err
	}
	return o.e.result()
}

// job is one key's way through a fill.
type job[V any] struct {
	key   string
	fence l1.Fence
	done  bool
	out   outcome[V]

	guard   guard
	seen    int64       // the version guardVersion, guardLease and guardRefresh write over
	leased  bool        // the read found a live lease of an older release on the key's item
	lease   string      // guardLease's token, until the fill consumes or releases it
	down    bool        // DynamoDB could not answer: the loader call is capped
	readErr error       // why L2 gave no answer (Get reports it)
	corrupt corruptOnce // counts the corrupt item this lookup met, once
	stale   *entry[V]   // the last value known, for StaleIfError

	e      *entry[V] // the loaded entry, to store
	enc    []byte    // its encoded value; nil for a negative entry
	l2TTL  time.Duration
	l1Want time.Duration // 0: L1TTL
}

func (j *job[V]) finish(e *entry[V], err error) {
	j.done, j.out = true, outcome[V]{e: e, err: err}
}

// fill is one fill of 1..N keys.
type fill[V any] struct {
	c      *Cache[V]
	ctx    context.Context    // detached from the callers' (loadCtx)
	cancel context.CancelFunc // ctx's
	mode   fillMode
	src    source[V] // modeLoad, modeRefresh
	old    *entry[V] // modeRefresh: the entry being refreshed
	jobs   []job[V]
	one    [1]job[V]   // jobs' storage for one key
	onEnd  func(error) // Options.OnMiss's end, if set

	// closing is ctx for a Get's fill (loadCtx): cancel is nil then.
	closing closeBound
}

func (c *Cache[V]) newFill(mode fillMode, src source[V], keys ...string) *fill[V] {
	return c.initFill(new(fill[V]), mode, src, keys...)
}

// initFill sets up f (zero: fresh storage, as join returns) as newFill does.
func (c *Cache[V]) initFill(f *fill[V], mode fillMode, src source[V], keys ...string) *fill[V] {
	*f = fill[V]{c: c, mode: mode, src: src}
	if len(keys) == 1 {
		f.jobs = f.one[:]
	} else {
		f.jobs = make([]job[V], len(keys))
	}
	for i, k := range keys {
		f.jobs[i].key = k
	}
	return f
}

// run takes every job through the steps (see the top of this file).
func (f *fill[V]) run() {
	f.begin()
	f.read()
	if f.mode == modeGet {
		f.answerGet()
		return
	}
	f.lease()
	f.load()
	f.store()
	f.end()
}

// pending returns the jobs not finished yet.
func (f *fill[V]) pending() []*job[V] {
	var out []*job[V]
	for i := range f.jobs {
		if !f.jobs[i].done {
			out = append(out, &f.jobs[i])
		}
	}
	return out
}

func (f *fill[V]) begin() {
	c := f.c
	for i := range f.jobs {
		j := &f.jobs[i]
		j.fence = c.beginFill(j.key)
		if f.mode == modeRefresh {
			continue // L1 holds the very entry being refreshed
		}
		now := c.l1.Now()
		if e, ok := c.l1.PeekAt(j.key, now); ok {
			if c.servableAt(e, now) {
				j.finish(e, nil)
				continue
			}
			j.stale = e
		}
	}
}

func (f *fill[V]) read() {
	if len(f.jobs) == 1 {
		if j := &f.jobs[0]; !j.done {
			f.readOne(j)
		}
		return
	}
	if todo := f.pending(); len(todo) > 0 {
		f.readMany(todo)
	}
}

func (f *fill[V]) readOne(j *job[V]) {
	c := f.c
	if c.pend.blocks(j.key) {
		// A failed invalidation of key is pending here: L2 may hold the
		// value it meant to replace. Neither read it nor fill it (pending.go).
		f.classify(j, l2.Item{}, errPendingKey)
		return
	}
	item, err := l2Call(c, func() (l2.Item, error) { return c.l2.Get(f.ctx, j.key) })
	f.classify(j, item, err)
}

// errUnread stands for a key BatchGetItem could not read (the call failed,
// or its retries ran out): L2 could not answer.
var errUnread = errors.New("tiered: L2 could not read the key")

func (f *fill[V]) readMany(todo []*job[V]) {
	c := f.c
	keys := make([]string, 0, len(todo))
	for _, j := range todo {
		if c.pend.blocks(j.key) {
			f.classify(j, l2.Item{}, errPendingKey) // see readOne
			continue
		}
		keys = append(keys, j.key)
	}
	if len(keys) == 0 {
		return
	}
	var corrupt map[string]bool // keys whose item BatchGet found malformed
	items, err := l2Call(c, func() (map[string]l2.Item, error) {
		return c.l2.BatchGet(f.ctx, keys, l2.IncludeVacant(), l2.OnCorrupt(func(k string, _ error) {
			if corrupt == nil { // called on this goroutine, during BatchGet
				corrupt = make(map[string]bool)
			}
			corrupt[k] = true
		}))
	})
	unread := func(string) bool { return err != nil } // the first call failed, or the circuit is open
	var pe *l2.PartialError
	if errors.As(err, &pe) {
		missed := make(map[string]bool, len(pe.Keys))
		for _, k := range pe.Keys {
			missed[k] = true
		}
		unread = func(k string) bool { return missed[k] }
	}
	for _, j := range todo {
		if j.done || j.readErr == errPendingKey {
			continue
		}
		it, ok := items[j.key]
		switch {
		case unread(j.key):
			f.classify(j, l2.Item{}, errUnread)
		case ok && !it.Vacant:
			f.classify(j, it, nil)
		case corrupt[j.key]:
			f.classify(j, l2.Item{}, l2.ErrCorruptItem) // malformed: BatchGet left it out
		default:
			// Absent (version 0) or vacant (tombstone, lease placeholder,
			// expired: its version).
			f.classify(j, it, l2.ErrNotFound)
		}
	}
}

// classify takes one key's L2 answer: a live item is adopted; otherwise it
// sets the job's guard (and what stale-if-error may serve).
func (f *fill[V]) classify(j *job[V], item l2.Item, err error) {
	c := f.c
	if f.mode == modeRefresh {
		f.classifyRefresh(j, item, err)
		return
	}
	switch {
	case err == nil:
		if !f.adopt(j, item) {
			// A live item we cannot decode: load. The fill meets that live
			// item and loses, so no tier keeps the load.
			j.guard, j.seen = guardVersion, item.Version
		}
	case errors.Is(err, l2.ErrNotFound):
		c.stats.l2Misses.Add(1)
		if item.Expired && f.staleOK() && j.stale == nil && time.Since(item.ExpiresAt) < c.o.MaxStale {
			j.stale, _ = c.fromItem(item)
		}
		// Fill only if the key is still at this version: a Set or Delete
		// landing during the load makes the fill lose, with or without a lease.
		j.guard, j.seen, j.leased = guardVersion, item.Version, item.Leased
	case errors.Is(err, l2.ErrCorruptItem):
		j.corrupt.count(&c.stats)
		j.guard, j.seen = guardVersion, 0 // a fill replaces the corrupt item, unless a write lands first
	default: // DynamoDB could not answer, the table is missing, or a pending invalidation
		j.guard, j.readErr, j.down = guardNone, err, l2Down(err)
	}
}

// classifyRefresh: a refresh takes a newer version from L2 if another node
// refreshed or wrote the key already; otherwise it reloads, and its write
// lands only over the version it refreshes.
func (f *fill[V]) classifyRefresh(j *job[V], item l2.Item, err error) {
	switch {
	case err == nil && item.Version > f.old.version:
		if f.adopt(j, item) {
			return
		}
	case errors.Is(err, l2.ErrCorruptItem):
		j.corrupt.count(&f.c.stats)
	}
	j.guard, j.seen, j.down = guardRefresh, f.old.version, l2Down(err)
	if err == errPendingKey {
		j.guard, j.readErr = guardNone, err
	}
}

// staleOK: StaleIfError applies to GetOrLoad's fills only.
func (f *fill[V]) staleOK() bool {
	return f.mode == modeLoad && f.src.one != nil && f.c.o.StaleIfError
}

// adopt is the one place an L2 item becomes the answer: decoded (an item
// the Codec cannot decode is counted as corrupt, once per lookup, and is
// not adopted), kept in L1 behind the job's fence, never past the item's
// expiry.
func (f *fill[V]) adopt(j *job[V], item l2.Item) bool {
	c := f.c
	e, ok := c.fromItem(item)
	if !ok {
		j.corrupt.count(&c.stats)
		return false
	}
	if f.mode == modeRefresh {
		c.stats.refreshesFromL2.Add(1)
	} else {
		c.stats.l2Hits.Add(1)
	}
	c.keep(j.key, j.fence, e, heldSize(item.Value), 0, item.ExpiresAt)
	j.finish(e, nil)
	return true
}

// answerGet answers a Get's keys that no tier has: not found, unless L2
// could not say.
func (f *fill[V]) answerGet() {
	for i := range f.jobs {
		j := &f.jobs[i]
		switch {
		case j.done:
		case isTableMissing(j.readErr):
			j.finish(nil, &TableMissingError{Table: f.c.o.Table, Op: "Get", Err: j.readErr})
		case j.down || j.readErr == errPendingKey:
			// DynamoDB did not answer, or this node's own failed write left
			// L2 unfit to answer (errPendingKey): Get cannot tell "absent".
			j.finish(nil, &L2Error{Op: "Get", Err: j.readErr})
		default:
			j.finish(&entry[V]{notFound: true}, nil)
		}
	}
}

func (f *fill[V]) lease() {
	if f.mode != modeLoad || f.src.one == nil || f.c.o.DisableLeases {
		return
	}
	if j := &f.jobs[0]; !j.done && j.guard == guardVersion && !j.down {
		f.acquireOrWait(j) // lease.go
	}
}

func (f *fill[V]) load() {
	todo := f.pending()
	if len(todo) == 0 {
		return
	}
	capped := false
	for _, j := range todo {
		capped = capped || j.down
	}
	f.c.callSource(f.ctx, f.src, todo, capped) // source.go
}

// fillWorkers bounds the concurrent L2 writes of one fill's loaded keys
// (DynamoDB has no conditional batch write: one UpdateItem per key).
const fillWorkers = 8

func (f *fill[V]) store() {
	var todo []*job[V]
	for i := range f.jobs {
		if j := &f.jobs[i]; !j.done && j.e != nil {
			todo = append(todo, j)
		}
	}
	if len(todo) == 1 {
		ver, err := f.write(todo[0])
		f.settle(todo[0], ver, err)
		return
	}
	type written struct {
		ver int64
		err error
	}
	res := make([]written, len(todo))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(fillWorkers, len(todo)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(todo); i = int(next.Add(1) - 1) {
				res[i].ver, res[i].err = f.write(todo[i])
			}
		})
	}
	wg.Wait()
	for i, j := range todo {
		f.settle(j, res[i].ver, res[i].err)
	}
}

// errNotWritten stands for an L2 write not attempted (guardNone).
var errNotWritten = errors.New("tiered: not written to L2")

// write is the conditional L2 write of a loaded value, by its guard.
func (f *fill[V]) write(j *job[V]) (int64, error) {
	c, e := f.c, j.e
	switch j.guard {
	case guardVersion:
		return l2Store(c, j.key, j.enc, func() (int64, error) {
			return c.l2.Fill(f.ctx, j.key, j.enc, e.notFound, j.l2TTL, "", l2.IfVersion(j.seen))
		})
	case guardLease:
		// The version the lease is bound to guards the fill (the lease item
		// is not written: the fill's new version voids the lease). A Delete
		// between the read and the lease makes this fill lose too: its
		// lease, bound to the version the Delete left, strands no one.
		return l2Store(c, j.key, j.enc, func() (int64, error) {
			return c.l2.Fill(f.ctx, j.key, j.enc, e.notFound, j.l2TTL, j.lease, l2.IfVersion(j.seen))
		})
	case guardRefresh:
		return l2Store(c, j.key, j.enc, func() (int64, error) {
			return c.l2.Refresh(f.ctx, j.key, j.enc, e.notFound, j.l2TTL, j.seen)
		})
	}
	return 0, errNotWritten
}

// settle is the one reading of a conditional write's answer.
func (f *fill[V]) settle(j *job[V], ver int64, err error) {
	c, e := f.c, j.e
	switch {
	case err == nil:
		e.version = ver
		j.lease = "" // the fill consumed it
	case errors.Is(err, l2.ErrConflict), errors.Is(err, l2.ErrLeaseLost):
		// A write or delete of key landed while we loaded: what we loaded may
		// be older than the table, and no tier keeps it (the change's own
		// stream record, or the write on this node, has dealt with L1). The
		// callers get the newer entry the table holds, if there is one (some
		// may have joined after that write was acknowledged), else what the
		// source said.
		// A lease, if held, is given back in end: void for every reader of
		// the key's new version already, but a lease of an older release on
		// the key's item may have refused the fill without moving it.
		c.stats.staleFillsDropped.Add(1)
		if cur, ok := c.newer(err); ok {
			e = cur
		}
		j.finish(e, nil)
		return
	case errors.Is(err, l2.ErrValueTooLarge):
		c.stats.l2TooLarge.Add(1) // serve and keep in L1 only
	case f.mode == modeRefresh:
		// L2 unavailable: keep the reload in this L1 only. It keeps the
		// version it replaces, so that the next refresh neither takes that
		// older L2 entry for a newer one nor writes over a version that is
		// not there.
		e.version = j.seen
	}
	// Not written (or refused for its size): L1 only, the fence still
	// guarding it against invalidations that arrived meanwhile.
	c.keep(j.key, j.fence, e, int64(len(j.enc)), j.l1Want, time.Now().Add(j.l2TTL))
	j.finish(e, nil)
}

// end gives back the leases of loads that did not land (so other nodes
// need not wait for them to expire) and serves a stale value, with
// StaleIfError, to a GetOrLoad whose load failed.
func (f *fill[V]) end() {
	c := f.c
	for i := range f.jobs {
		j := &f.jobs[i]
		if j.lease != "" {
			c.releaseLease(j.key, j.lease)
			j.lease = ""
		}
		err := j.out.err
		if err != nil && f.staleOK() && j.stale != nil && !j.stale.notFound && !errors.Is(err, ErrNotFound) {
			c.stats.staleServed.Add(1)
			j.out = outcome[V]{e: &entry[V]{value: j.stale.value, version: j.stale.version, err: &StaleError{Err: err}}}
		}
	}
}

// fromItem decodes an L2 item (through decode: a Codec error or panic is
// false, never a crash). It counts nothing: each lookup counts the corrupt
// item it met once, in Stats.L2.Corrupt (see corruptOnce).
func (c *Cache[V]) fromItem(item l2.Item) (*entry[V], bool) {
	e := &entry[V]{version: item.Version, notFound: item.NotFound, sum: valueSum(item.Value)}
	if !item.NotFound {
		v, err := c.decode(item.Value)
		if err != nil {
			return nil, false
		}
		e.value = v
	}
	return e, true
}

// newer returns the live entry a refused fill found in the table (a write
// that landed while the fill loaded), if it can be decoded: callers of the
// fill get that rather than their older load.
func (c *Cache[V]) newer(err error) (*entry[V], bool) {
	var ce *l2.ConflictError
	if !errors.As(err, &ce) || ce.Current == nil {
		return nil, false
	}
	return c.fromItem(*ce.Current)
}

// corruptOnce counts, in Stats.L2.Corrupt, the corrupt item one lookup of one
// key met, once however many times the lookup reads it (its first read, the
// lease answer, the lease wait's reads).
type corruptOnce bool

func (o *corruptOnce) count(c *counters) {
	if !*o {
		*o = true
		c.l2Corrupt.Add(1)
	}
}

// keep stores e in L1 unless key was written or invalidated since fence was
// taken. l1's Fill returns only once the entry is visible to Get, so callers
// arriving after this fill see it instead of starting another. size is the
// encoded value's size; want the L1 lifetime wanted (0: L1TTL), exp when the
// L2 item expires.
func (c *Cache[V]) keep(key string, fence l1.Fence, e *entry[V], size int64, want time.Duration, exp time.Time) {
	ttl := c.ttl.l1For(want, exp)
	if ttl <= 0 {
		return // the L2 item expired meanwhile: serve it, do not keep it
	}
	c.stamp(e, fence.Taken(), ttl)
	c.indexKey(key)
	c.l1.Fill(key, fence, e, size, ttl)
}
